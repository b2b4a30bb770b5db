"""The user commands: ``appliance services``, ``describe``, ``submit``, ``jobs``, ``watch``
and ``cancel``, against an appliance's public API (the ``api_url`` setting, or ``--url``).

    appliance services         appliance describe clustalo
    appliance submit clustalo --file input=seqs.fa --set iterations=1 --wait --download out/
    appliance watch JOB        appliance cancel JOB        appliance jobs --status RUNNING

Every command takes ``--json``: what it found, as JSON on stdout, for scripts. Exit codes
follow the job's end when the command waits: 0 COMPLETED, 1 FAILED, 2 ERROR or REJECTED,
3 INTERRUPTED or DELETED; 4 when the appliance refused the request or could not be reached
(its message on stderr, with the address tried); 5 when ``cancel`` met a job that had
already ended.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.client import Client, ClientError
from appliance.settings import load_settings

EXIT_CODES = {
    "COMPLETED": 0,
    "FAILED": 1,
    "ERROR": 2,
    "REJECTED": 2,
    "INTERRUPTED": 3,
    "DELETED": 3,
}
EXIT_REFUSED = 4
EXIT_ENDED = 5  # cancel: the job had already ended

Handler = Callable[[argparse.Namespace, Client], int]


def _client(args: argparse.Namespace) -> Client:
    if args.url:
        return Client(args.url, token=args.token)
    return Client(load_settings().api_url, token=args.token,
                  where="the api_url setting, as no --url was given; give --url or set "
                  "APPLIANCE_API_URL")  # fmt: skip


def _json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _bounds(param: dict[str, Any]) -> str:
    low, high = param.get("min"), param.get("max")
    if low is None and high is None:
        return ""
    opening = "(" if param.get("minExclusive") else "["
    closing = ")" if param.get("maxExclusive") else "]"
    return f" {opening}{'' if low is None else low}, {'' if high is None else high}{closing}"


def _split(items: list[str] | None, option: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ClientError(f"{option} expects NAME=VALUE, got {item!r}")
        pairs.append((name, value))
    return pairs


class Progress:
    """One line on stderr, rewritten in place on a terminal (a new line per change elsewhere)."""

    def __init__(self) -> None:
        self.last = ""
        self.tty = sys.stderr.isatty()

    def __call__(self, job: dict[str, Any], waited: float) -> None:
        line = f"job {job.get('id')}: {job.get('status')}"
        why = job.get("waiting")
        if isinstance(why, dict) and why.get("message"):
            line += f" ({why['message']})"
        if self.tty:
            print(f"\r{line} [{waited:.0f} s]\x1b[K", end="", file=sys.stderr, flush=True)
        elif line != self.last:
            print(line, file=sys.stderr, flush=True)
        self.last = line

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def _finish(client: Client, args: argparse.Namespace, job_id: str) -> int:
    progress = Progress()
    job = client.wait(job_id, progress, timeout=args.timeout)
    progress.done()
    status = str(job.get("status"))
    downloaded = []
    if getattr(args, "download", None):
        downloaded = client.download(job_id, args.download)
    if args.json:
        _json({**job, "downloaded": [str(p) for p in downloaded]})
    for path in [] if args.json else downloaded:
        print(path)
    if status != "COMPLETED":
        code = f" (exit code {job['exitCode']})" if job.get("exitCode") is not None else ""
        print(
            f"job {job_id} {status}{code}: {job.get('error') or ''}".rstrip(": "), file=sys.stderr
        )
        for line in client.tail(job_id, "stderr"):  # what the tool said last
            print(f"  stderr| {line}", file=sys.stderr)
    return EXIT_CODES.get(status, 2)


def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    files = [(name, Path(path)) for name, path in _split(args.file, "--file")]
    for name, path in files:
        if not path.is_file():
            raise ClientError(f"--file {name}={path}: no such file")
    values = _split(args.set, "--set") + ([("_webhook", args.webhook)] if args.webhook else [])
    values += [("_email", args.email)] if args.email else []
    values += [("_reuse", "false")] if args.no_reuse else []
    job_id = client.submit(args.service, values, files)
    if not (args.wait or args.download):
        if args.json:
            _json(client.job(job_id))
        else:
            print(job_id)
        return 0
    if not args.json:
        print(job_id)
    return _finish(client, args, job_id)


def cmd_watch(args: argparse.Namespace, client: Client) -> int:
    return _finish(client, args, args.job)


def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    job = client.job(args.job)
    if job.get("finished"):
        if args.json:
            _json({"id": args.job, "cancelled": False, "status": job.get("status")})
        else:
            print(f"job {args.job} had already ended: {job.get('status')}; nothing to cancel",
                  file=sys.stderr)  # fmt: skip
        return EXIT_ENDED
    client.cancel(args.job)
    if args.json:
        _json({"id": args.job, "cancelled": True, "status": client.job(args.job).get("status")})
    else:
        print(f"job {args.job}: cancel requested")
    return 0


def cmd_services(args: argparse.Namespace, client: Client) -> int:
    services = client.services()
    if args.json:
        _json(services)
        return 0
    for service in services:
        status = (service.get("status") or {}).get("status", "")
        print(f"{service.get('id', ''):<20} {status:<8} {service.get('name', '')}")
    return 0


def cmd_describe(args: argparse.Namespace, client: Client) -> int:
    service = client.service(args.service)
    if args.json:
        _json(service)
        return 0
    print(f"{service.get('id')}: {service.get('name')}")
    if service.get("description"):
        print(f"  {service['description']}")
    print("parameters (--set NAME=VALUE, --file NAME=PATH for files):")
    for param in service.get("parameters") or []:
        kind = str(param.get("type")) + ("[]" if param.get("array") else "")
        need = "required" if param.get("required") else "optional"
        line = f"  {param.get('id')}  {kind}, {need}{_bounds(param)}"
        if param.get("default") is not None:
            line += f", default {param['default']}"
        if param.get("choices"):
            line += f", one of: {', '.join(str(c) for c in param['choices'])}"
        print(line)
        if param.get("name") or param.get("description"):
            print(f"      {param.get('name', '')}: {param.get('description', '')}".rstrip(": "))
    for preset in service.get("presets") or []:
        values = " ".join(f"--set {k}={v}" for k, v in (preset.get("values") or {}).items())
        print(f"preset {preset.get('id')} ({preset.get('name')}): {values}")
    return 0


def cmd_jobs(args: argparse.Namespace, client: Client) -> int:
    jobs = client.jobs(service=args.service, status=args.status, limit=args.limit)
    if args.json:
        _json(jobs)
        return 0
    for job in jobs:
        print(f"{job.get('id')}  {job.get('service', ''):<16} {job.get('status', ''):<12} "
              f"{job.get('submissionTime', '')}")  # fmt: skip
    return 0


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            client = _client(args)
        except ClientError as exc:
            print(f"appliance: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        try:
            return handler(args, client)
        except ClientError as exc:
            print(f"appliance: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except KeyboardInterrupt:
            return 130
        finally:
            client.close()

    return run


def add_commands(sub: Any) -> None:
    """The user commands, as subcommands of ``appliance``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the appliance's address (default: the api_url setting)")
    common.add_argument("--token", help="a bearer token (the operator's, to list every job)")
    common.add_argument("--json", action="store_true", help="print what was found as JSON")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds"
    )

    services = sub.add_parser("services", parents=[common], help="list the services")
    services.set_defaults(handler=_run(cmd_services))
    describe = sub.add_parser("describe", parents=[common], help="a service's parameters: "
                              "types, defaults, bounds, choices, presets")  # fmt: skip
    describe.add_argument("service", help="the service's id, e.g. clustalo")
    describe.set_defaults(handler=_run(cmd_describe))

    submit = sub.add_parser(
        "submit", parents=[common, waiting], help="submit a job (and wait for it)"
    )
    submit.add_argument("service", help="the service's id, e.g. clustalo")
    submit.add_argument(
        "--file", action="append", metavar="NAME=PATH", help="upload a file for a parameter"
    )
    submit.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="a parameter value (repeat for arrays)"
    )
    submit.add_argument(
        "--wait", action="store_true", help="wait for the end; the exit code follows it"
    )
    submit.add_argument("--webhook", metavar="URL", help="a web address the appliance posts "
                        "the job's end to, signed (where the site sends webhooks)")  # fmt: skip
    submit.add_argument("--email", metavar="ADDRESS", help="an address told when the job "
                        "ends (where the site sends e-mail)")  # fmt: skip
    submit.add_argument("--no-reuse", action="store_true", help="run it even if an identical "
                        "earlier job's results could answer it")  # fmt: skip
    submit.add_argument(
        "--download", type=Path, metavar="DIR", help="wait, then download every output into DIR"
    )
    submit.set_defaults(handler=_run(cmd_submit))

    watch = sub.add_parser(
        "watch", parents=[common, waiting], help="wait for a job's end, showing its state"
    )
    watch.add_argument("job")
    watch.add_argument(
        "--download", type=Path, metavar="DIR", help="then download every output into DIR"
    )
    watch.set_defaults(handler=_run(cmd_watch))

    cancel = sub.add_parser("cancel", parents=[common], help="cancel a job")
    cancel.add_argument("job")
    cancel.set_defaults(handler=_run(cmd_cancel))

    jobs = sub.add_parser("jobs", parents=[common], help="list jobs (needs the operator's token, "
                          "unless the appliance makes job lists public)")  # fmt: skip
    jobs.add_argument("--service")
    jobs.add_argument("--status", help="e.g. RUNNING, COMPLETED")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(handler=_run(cmd_jobs))
