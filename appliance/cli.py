"""The ``appliance`` command. Each subcommand loads settings at start, never at import."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from appliance import __version__
from appliance.catalogue import load_catalogue
from appliance.commandline import build_command
from appliance.errors import ApplianceError, CommandError, ConfigError, FormErrors
from appliance.forms import FileRef, RawValue, validate
from appliance.model import Service
from appliance.servicefolder import load_service_file
from appliance.settings import Settings, load_settings


def _print_error(message: str) -> None:
    print(f"appliance: {message}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    settings = load_settings()
    catalogue = load_catalogue(settings)
    for error in catalogue.errors:
        print(error.describe(), file=sys.stderr)
    for mistake in catalogue.mistakes:
        print(mistake.describe(), file=sys.stderr)
    for warning in catalogue.warnings:
        print(f"warning: {warning.describe()}", file=sys.stderr)
    print(f"settings: {settings.source}")
    print(
        f"services: {len(catalogue.services)} from {settings.services_dir}: "
        f"{', '.join(sorted(catalogue.services)) or '-'}"
    )
    print(
        f"runners: {len(catalogue.runners)} from {settings.runners_dir}: "
        f"{', '.join(sorted(catalogue.runners)) or '-'}"
    )
    problems = len(catalogue.errors) + len(catalogue.mistakes)
    if not args.offline:
        from appliance.checks import live_checks

        problems += asyncio.run(live_checks(settings, catalogue))
    if problems:
        print(f"{problems} problem(s) found", file=sys.stderr)
        return 1
    print("OK")
    return 0


def _pairs(items: Sequence[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"{option} takes NAME=VALUE, got {item!r}")
        pairs.append((name, value))
    return pairs


def _find_service(name: str, settings: Settings | None) -> Service:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_service_file(path)
    assert settings is not None
    catalogue = load_catalogue(settings)
    if name not in catalogue.services:
        broken = [e for e in catalogue.errors if Path(e.source).name.startswith(f"{name}.")]
        if broken:
            raise broken[0]
        known = ", ".join(sorted(catalogue.services)) or "none"
        raise ConfigError(f"no service {name!r} in {settings.services_dir} (known: {known})")
    return catalogue.services[name]


def cmd_command(args: argparse.Namespace) -> int:
    looks_like_path = Path(args.service).suffix in (".yaml", ".yml")
    settings = None if looks_like_path else load_settings()
    service = _find_service(args.service, settings)
    raw: dict[str, list[RawValue]] = {}
    for name, value in _pairs(args.set or [], "--set"):
        raw.setdefault(name, []).append(value)
    for name, value in _pairs(args.file or [], "--file"):
        path = Path(value).resolve()
        raw.setdefault(name, []).append(FileRef(value, path, path.name))
    try:
        values = asyncio.run(validate(service, raw))
    except FormErrors as exc:
        print(json.dumps(exc.to_json(), indent=2))
        return 1
    runner = service.runners.get(args.runner)
    if runner is None:
        raise ConfigError(
            f"service {service.id} has no runner {args.runner!r} "
            f"(it has: {', '.join(service.runners)})"
        )
    plan = build_command(service, values, os.environ, runner)
    print(json.dumps({"service": service.id, "runner": runner.runner, **plan.to_json()}, indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """One job of a service, run here in its image (appliance/tryrun.py)."""
    from appliance.runners.config import load_runner_configs
    from appliance.tryrun import form_errors_text, print_result, try_run

    settings = load_settings()
    service = _find_service(args.service, settings)
    if not service.image:
        raise ConfigError(f"service {service.id} names no image: appliance run runs images")
    runners, errors = load_runner_configs(settings.runners_dir)
    for error in errors:
        print(error.describe(), file=sys.stderr)
    try:
        result = try_run(service, runners, os.environ, _pairs(args.set or [], "--set"),
                         _pairs(args.file or [], "--file"))  # fmt: skip
    except FormErrors as exc:
        print(form_errors_text(exc), file=sys.stderr)
        return 2
    print_result(result)
    return 0 if result.exit_code == 0 else 1


def _logging(settings: Settings) -> None:
    from appliance import logs

    logs.setup(settings.log_level, settings.log_format)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


def cmd_scheduler(args: argparse.Namespace) -> int:
    from appliance.process import run_scheduler

    settings = load_settings()
    _logging(settings)

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await run_scheduler(settings, stop, heartbeat=args.heartbeat, runners=args.runner)

    asyncio.run(main())
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from appliance.web.server import run_web

    settings = load_settings()
    _logging(settings)
    return run_web(settings, worker=args.worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from appliance.process import run_worker

    settings = load_settings()
    _logging(settings)

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await run_worker(
            settings,
            stop,
            slots=args.slots or settings.worker_slots or os.cpu_count() or 1,
            state_dir=args.state_dir,
            keys=args.keys,
            allow=args.allow or [],
        )

    asyncio.run(main())
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 if the heartbeat file was touched within --max-age seconds."""
    try:
        age = time.time() - args.heartbeat.stat().st_mtime
    except OSError:
        print(f"no heartbeat at {args.heartbeat}", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"heartbeat is {age:.0f} s old", file=sys.stderr)
        return 1
    return 0


def cmd_proxy_config(args: argparse.Namespace) -> int:
    from appliance.proxyconf import ProxyOptions, nginx_config

    options = ProxyOptions(listen=args.listen, upstream=args.upstream, user=args.user,
                           pid=args.pid, static_dir=args.static_dir,
                           access_log=args.access_log, tls_certificate=args.tls_certificate,
                           tls_key=args.tls_key, tls_listen=args.tls_listen,
                           hsts=args.hsts)  # fmt: skip
    print(nginx_config(load_settings(), options), end="")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from appliance.messaging import CurveKeys

    if args.path.exists():
        raise ConfigError(f"{args.path} exists already; not overwriting it")
    keys = CurveKeys.generate()
    keys.save(args.path)
    print(f"wrote {args.path}; public key: {keys.public.decode()}")
    return 0


def cmd_tes_token(args: argparse.Namespace) -> int:
    """A new random token for a TES client: the token to give them, the line to keep."""
    import secrets

    from appliance.tes.auth import token_hash

    if not args.name or any(c.isspace() or c == "#" for c in args.name):
        raise ConfigError(f"a client's name is one word without '#', not {args.name!r}")
    token = secrets.token_urlsafe(32)
    print(f"token (give it to {args.name}; it is not kept anywhere): {token}", file=sys.stderr)
    print(f"{args.name} {token_hash(token)}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    """Each service folder with a Dockerfile, and the image its service files name, read by
    the same loader as everything else (scripts/build-images builds from this)."""
    from appliance.servicefolder import load_services

    settings = load_settings()
    services, errors = load_services(settings.services_dir)
    for error in errors:
        print(error.describe(), file=sys.stderr)
    images: dict[Path, set[str]] = {}
    for dockerfile in sorted(settings.services_dir.rglob("Dockerfile")):
        images[dockerfile.parent] = set()
    for service in services.values():
        folder = Path(service.source).parent
        if folder in images and service.image:
            images[folder].add(service.image)
    problems = len(errors)
    for folder, names in images.items():
        relative = folder.relative_to(settings.services_dir).as_posix()
        if len(names) != 1:
            named = ", ".join(sorted(names)) or "none"
            print(f"{folder}: a Dockerfile needs one image named by the service files beside it "
                  f"(they name: {named})", file=sys.stderr)  # fmt: skip
            problems += 1
            continue
        print(f"{relative}\t{names.pop()}")
    return 1 if problems else 0


def cmd_operator_token(args: argparse.Namespace) -> int:
    """A new random operator token: the token (kept by the operator), the setting line."""
    import secrets

    from appliance.tokens import token_hash

    token = secrets.token_urlsafe(32)
    print(f"operator token (keep it; it is not kept anywhere): {token}", file=sys.stderr)
    print(f"operator_token_sha256: {token_hash(token)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Command-line tools as web services. Settings come from the YAML file "
        "named by APPLIANCE_SETTINGS and APPLIANCE_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check",
        help="validate settings, service and runner files; ask the database and each "
        "runner's engine whether they answer and have the services' images",
    )
    check.add_argument("--offline", action="store_true",
                       help="check the files only (no database, no engines)")  # fmt: skip
    check.set_defaults(handler=cmd_check)

    command = sub.add_parser(
        "command", help="print, as JSON, the argv, environment and files a job would get"
    )
    command.add_argument("service", help="a service id, or the path of a .service.yaml file")
    command.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="a parameter value (repeat for arrays)"
    )
    command.add_argument(
        "--file", action="append", metavar="NAME=PATH", help="a file parameter (repeat for arrays)"
    )
    command.add_argument(
        "--runner",
        default="default",
        help="which of the service's runners to build for (default: default)",
    )
    command.set_defaults(handler=cmd_command)

    scheduler = sub.add_parser("scheduler", help="run the scheduler (until SIGTERM)")
    scheduler.add_argument(
        "--heartbeat", type=Path, default=None,
        help="a file touched while the scheduler makes progress, for health checks",
    )  # fmt: skip
    scheduler.add_argument(
        "--runner", action="append", metavar="ID",
        help="run only this configured runner's jobs (repeat; default: every runner)",
    )  # fmt: skip
    scheduler.set_defaults(handler=cmd_scheduler)

    web = sub.add_parser("web", help="run the web API on hypercorn (until SIGTERM)")
    web.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    web.set_defaults(handler=cmd_web)

    worker = sub.add_parser("worker", help="run a local worker pool (until SIGTERM)")
    worker.add_argument(
        "--slots",
        type=int,
        default=None,
        help="jobs run at once (default: the worker_slots setting, else one per CPU)",
    )
    worker.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the pool remembers its jobs (default: <jobs_dir>/.worker)",
    )
    worker.add_argument(
        "--keys",
        type=Path,
        default=None,
        help="CURVE key file of the pool (required on a network address)",
    )
    worker.add_argument(
        "--allow",
        type=Path,
        action="append",
        help="a client's CURVE key file (public part used); repeat",
    )
    worker.set_defaults(handler=cmd_worker)

    proxy = sub.add_parser("proxy-config", help="print the nginx configuration for these settings")
    proxy.add_argument("--listen", default="8080", help="nginx listen address (default 8080)")
    proxy.add_argument("--upstream", default="127.0.0.1:8000", help="host:port of the web process")
    proxy.add_argument("--user", default=None, help="nginx worker user (default: nginx's own)")
    proxy.add_argument("--pid", default="nginx.pid", help="nginx pid file")
    proxy.add_argument("--access-log", default="/dev/stdout", help="where nginx writes its "
                       "access log (its format: the access_log setting)")  # fmt: skip
    proxy.add_argument("--static-dir", default=None, help="the web pages' static files, as the "
                       "proxy sees them (default: this installation's; the proxy image's are in "
                       "/usr/share/appliance/static)")  # fmt: skip
    proxy.add_argument("--tls-certificate", default=None, help="the certificate chain as the "
                       "proxy reads it (default: the tls_certificate setting); with --tls-key, "
                       "HTTPS on --tls-listen and plain HTTP redirected to https_port")  # fmt: skip
    proxy.add_argument("--tls-key", default=None, help="its key (default: the tls_key setting)")
    proxy.add_argument("--tls-listen", default="8443", help="nginx's HTTPS listen address "
                       "(default 8443)")  # fmt: skip
    proxy.add_argument("--hsts", action="store_true", help="tell browsers to use HTTPS only "
                       "(Strict-Transport-Security): for a site's own certificate")  # fmt: skip
    proxy.set_defaults(handler=cmd_proxy_config)

    keygen = sub.add_parser("keygen", help="write a new CURVE key file (for the worker pool)")
    keygen.add_argument("path", type=Path)
    keygen.set_defaults(handler=cmd_keygen)

    tes_token = sub.add_parser(
        "tes-token",
        help="make a TES client's token: prints it (stderr) and the line for tes_tokens_file "
        "(stdout)",
    )
    tes_token.add_argument("name", help="the client's name (owns the tasks it creates)")
    tes_token.set_defaults(handler=cmd_tes_token)

    trial = sub.add_parser(
        "run",
        help="run one job of a service here, in its image with the docker runner's isolation "
        "(no bundle or database): prints stdout, stderr and the outputs",
    )
    trial.add_argument("service", help="a service id, or the path of a service file")
    trial.add_argument("--set", action="append", metavar="NAME=VALUE", help="a parameter's value")
    trial.add_argument("--file", action="append", metavar="NAME=PATH", help="a file parameter")
    trial.set_defaults(handler=cmd_run)

    images = sub.add_parser(
        "images", help="list each service folder with a Dockerfile and the image to build from it"
    )
    images.set_defaults(handler=cmd_images)

    operator = sub.add_parser(
        "operator-token",
        help="make the operator's token (lists every job): prints it (stderr) and the "
        "settings line (stdout)",
    )
    operator.set_defaults(handler=cmd_operator_token)

    from appliance.backup import add_commands as add_backup
    from appliance.purge import add_command as add_purge
    from appliance.usercli import add_commands

    add_purge(sub)
    add_backup(sub)
    add_commands(sub)

    health = sub.add_parser("health", help="exit 0 if a process's heartbeat is fresh")
    health.add_argument("--heartbeat", type=Path, required=True)
    health.add_argument("--max-age", type=float, default=30.0)
    health.set_defaults(handler=cmd_health)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ConfigError, CommandError) as exc:
        _print_error(str(exc) if not isinstance(exc, ConfigError) else exc.describe())
        return 2
    except ApplianceError as exc:
        _print_error(str(exc))
        return 2
    return code
