"""The appliance's settings: one frozen object, built once at process start.

Read from the YAML file named by ``APPLIANCE_SETTINGS`` (if set), then overridden key by
key by ``APPLIANCE_<KEY>`` environment variables (for containers). Nothing is read at
import time. Unknown keys, in the file or as ``APPLIANCE_*`` variables, are errors that
name the file (or variable) and the key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError, ConfigErrors
from appliance.settingvalues import (
    DAY,
    GIB,
    as_bool,
    as_path,
    as_str,
    bind_or_off,
    byte_size,
    file_roots,
    host_name,
    http_endpoint,
    log_level,
    networks,
    nonempty_words,
    number,
    one_of,
    optional_path,
    positive_int,
    s3_roots,
    site_url,
    token_hash,
    url_prefix,
    whole,
    within,
    words,
)
from appliance.units import parse_duration
from appliance.yamlfile import read_mapping

SETTINGS_ENV = "APPLIANCE_SETTINGS"
ENV_PREFIX = "APPLIANCE_"


def _setting(default: Any, parse: Callable[[object], Any], doc: str) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every setting, with a default that works for a local run from the project folder."""

    mongodb_uri: str = _setting("mongodb://127.0.0.1:27017", as_str, "MongoDB connection string")
    mongodb_database: str = _setting("appliance", as_str, "database holding jobs and files")
    uploads_dir: Path = _setting(Path("var/uploads"), as_path, "where uploaded files are stored")
    jobs_dir: Path = _setting(Path("var/jobs"), as_path, "where each job gets its directory")
    uploads_url: str = _setting(
        "/media/uploads", url_prefix, "URL prefix under which the proxy serves uploads_dir"
    )
    jobs_url: str = _setting(
        "/media/jobs", url_prefix, "URL prefix under which the proxy serves jobs_dir"
    )
    services_dir: Path = _setting(
        Path("services"), as_path, "folder searched for *.service.yaml files"
    )
    runners_dir: Path = _setting(Path("runners"), as_path, "folder of runner configurations")
    upload_max_bytes: int = _setting(
        100 * 1024**2, within(byte_size, 1024, 1024 * GIB), "largest accepted upload, e.g. 100M"
    )
    job_max_output_bytes: int = _setting(
        20 * 1024**3, within(byte_size, 1024**2, 1024**5, off="no limit"),
        "most a job may write into its directory (checked at its end: "
        "FAILED, files deleted); 0: no limit",
    )  # fmt: skip
    upload_max_files: int = _setting(
        50, within(positive_int, 1, 10_000), "most files one job submission may carry (more: 413)"
    )
    scheduler_address: tuple[str, ...] = _setting(
        ("tcp://127.0.0.1:5570",), nonempty_words,
        "ZeroMQ address where a scheduler takes wake-ups; the web process wakes every "
        "scheduler listed (comma-separated), a scheduler listens on the one it is given",
    )  # fmt: skip
    wake_keys: Path | None = _setting(
        None, optional_path,
        "CURVE key file shared by the web processes and the schedulers (appliance keygen); "
        "needed when scheduler_address is not loopback or ipc",
    )  # fmt: skip
    worker_address: str = _setting(
        "tcp://127.0.0.1:5571", as_str, "ZeroMQ address of the local worker pool"
    )
    worker_slots: int = _setting(
        0, within(whole, 1, 4096, off="one per CPU"),
        "jobs the local worker pool runs at once (0: one per CPU); in the compose "
        "bundle, a number turns the pool on"
    )  # fmt: skip
    web_bind: str = _setting("127.0.0.1:8000", as_str, "host:port the web process listens on")
    web_workers: int = _setting(1, within(positive_int, 1, 256), "number of web worker processes")
    instance: str = _setting(
        "appliance", as_str, "name of this appliance, put on every container it starts"
    )
    database_timeout: float = _setting(
        20.0,
        within(parse_duration, 0.5, 600),
        "longest wait for one MongoDB operation before it counts as failed",
    )
    file_timeout: float = _setting(
        30.0, within(parse_duration, 1, 600),
        "longest wait for one read or write of the jobs' file system by the scheduler (a "
        "hung network file system then delays that job only, never the scheduler's loop)",
    )  # fmt: skip
    lost_after: float = _setting(
        60.0, within(parse_duration, 5, DAY),
        "a started job whose runner does not answer for this long ends in ERROR with the "
        "reason (its container, pod, batch job or worker may be gone with its engine or node)",
    )  # fmt: skip
    lease_seconds: float = _setting(
        30.0,
        within(parse_duration, 1, DAY),
        "how long a scheduler holds a job before others may take it over",
    )
    sweep_seconds: float = _setting(
        5.0,
        within(parse_duration, 0.05, 3600),
        "how often the scheduler looks for work it was not woken for",
    )
    job_retention: float = _setting(
        7 * 86400.0,
        within(parse_duration, 3600, 100 * 365 * DAY, off="keep forever"),
        "finished jobs older than this are deleted (0: keep forever)",
    )
    upload_retention: float = _setting(
        7 * 86400.0,
        within(parse_duration, 3600, 100 * 365 * DAY, off="keep forever"),
        "uploads older than this are deleted (0: keep forever)",
    )
    service_tests: bool = _setting(
        True, as_bool, "run the service files' tests (their 'tests' section) at the scheduler's "
        "start and every test's interval; each service's status (OK, WARNING, DOWN) comes from them",
    )  # fmt: skip
    log_level: str = _setting("INFO", log_level, "DEBUG, INFO, WARNING or ERROR")
    metrics_public: bool = _setting(
        False, as_bool, "let anyone read the web process's /metrics (else the operator's token)"
    )
    scheduler_metrics_bind: str = _setting(
        "", bind_or_off, "HOST:PORT where the scheduler serves its Prometheus metrics (empty: off)"
    )
    log_format: str = _setting(
        "text", one_of("text", "json"), "the processes' logs as text lines or JSON lines (with "
        "request id, job, service and runner as fields)",
    )  # fmt: skip
    access_log: str = _setting(
        "common", one_of("common", "json", "off"), "one line per HTTP request, from the proxy "
        "and from the web process, each with its request id: common (text), json, or off",
    )  # fmt: skip
    # The proxy (appliance proxy-config): who it answers, and how much one client may take
    public_hosts: tuple[str, ...] = _setting(
        ("localhost", "127.0.0.1", "::1"), words,
        "host names the proxy answers for (others: 421); '*' for any",
    )  # fmt: skip
    tls_certificate: Path | None = _setting(
        None, optional_path, "the proxy's certificate chain (PEM) for HTTPS, with tls_key; in "
        "the compose bundle a file on the host, which scripts/up copies into the proxy",
    )  # fmt: skip
    tls_key: Path | None = _setting(
        None, optional_path, "the private key (PEM) of tls_certificate",
    )  # fmt: skip
    tls_self_signed: bool = _setting(
        False, as_bool, "scripts/up makes a self-signed certificate for public_hosts (a "
        "workstation's, or a trial) when no tls_certificate is given",
    )  # fmt: skip
    https_port: int = _setting(
        8443, within(positive_int, 1, 65535), "the port clients use for HTTPS: the bundle "
        "publishes it, and plain HTTP is redirected to it",
    )  # fmt: skip
    trusted_proxies: tuple[str, ...] = _setting(
        (), networks, "addresses or CIDR blocks of front proxies (a TLS proxy, an Ingress) "
        "whose X-Forwarded-For names the client; nobody else's is believed",
    )  # fmt: skip
    proxy_client_connections: int = _setting(
        64,
        within(whole, 1, 1_000_000, off="no limit"),
        "most open connections per client address at the proxy (0: no limit)",
    )
    proxy_client_rate: int = _setting(
        100, within(whole, 1, 1_000_000, off="no limit"),
        "requests per second per client address at the proxy, bursts of 10 s "
        "allowed (0: no limit)",
    )  # fmt: skip
    proxy_body_timeout: float = _setting(
        20.0,
        within(parse_duration, 1, 3600),
        "longest pause between two reads of a request body at the proxy",
    )
    previous_runners: tuple[str, ...] = _setting(
        (), words, "runners for the previous system's runner classes in its service files: "
        "CLASS=RUNNER pairs, * for any class (e.g. *=docker)",
    )  # fmt: skip
    runner_aliases: tuple[str, ...] = _setting(
        (), words, "runners that stand in for others: NAME=RUNNER pairs; a service that names "
        "runner NAME runs on RUNNER (a Kubernetes install: docker=kubernetes)",
    )  # fmt: skip
    # Quotas (appliance/web/quotas.py): 0 turns one off
    client_max_active_jobs: int = _setting(
        100,
        within(whole, 1, 10**9, off="no limit"),
        "most unfinished jobs one client address may have (more: 429)",
    )
    client_upload_bytes: int = _setting(
        10 * 1024**3,
        within(byte_size, 1, 1024**5, off="no limit"),
        "most bytes one client address may upload per client_upload_period",
    )
    client_upload_period: float = _setting(
        3600.0, within(parse_duration, 1, 365 * DAY), "the period of client_upload_bytes"
    )
    max_queued_jobs: int = _setting(
        10000,
        within(whole, 1, 10**9, off="no limit"),
        "most jobs waiting to start, all clients together (more: 503)",
    )
    min_free_disk: int = _setting(
        1024**3,
        within(byte_size, 0, 2**63 - 1),
        "uploads and jobs are refused (507) when their volume has less free",
    )
    disk_warning_percent: float = _setting(
        85.0,
        within(number, 1, 100, off="no warning"),
        "readiness, appliance check and the volume gauges warn when the uploads or jobs "
        "volume is fuller than this, in per cent (well before min_free_disk refuses work)",
    )
    allowed_origins: tuple[str, ...] = _setting(
        (), words, "web sites (scheme://host[:port]) whose pages may call the API from a "
        "browser (CORS, and cross-site writes)",
    )  # fmt: skip
    # Who may see what (docs/api.md, "What anyone can see and do")
    operator_token_sha256: str = _setting(
        "", token_hash, "hex SHA-256 of the operator's token, which lists everyone's jobs"
    )
    public_job_lists: bool = _setting(
        False, as_bool, "let anyone list every job, as the previous system did"
    )
    # The GA4GH Task Execution API (docs/tes.md): off until enabled.
    tes_enabled: bool = _setting(False, as_bool, "serve the TES API under /ga4gh/tes/v1")
    tes_tokens_file: Path | None = _setting(
        None, optional_path, "file of TES clients: a line 'name sha256-of-token' each"
    )
    tes_anonymous: bool = _setting(
        False, as_bool, "let TES requests without a token in (as one shared client)"
    )
    tes_images: tuple[str, ...] = _setting(
        (), words, "images TES tasks may use: exact names, or prefixes ending in / or :"
    )
    tes_network_images: tuple[str, ...] = _setting(
        (), words, "of those, the images whose executors get a network"
    )
    tes_runner: str = _setting("docker", as_str, "the runner (one that runs images) for tasks")
    api_url: str = _setting(
        "http://localhost:8080", as_str,
        "the appliance that the user commands (submit, jobs, watch, cancel) talk to",
    )  # fmt: skip
    tes_file_roots: tuple[str, ...] = _setting(
        (), file_roots,
        "folders that file:// inputs and outputs may be under; {client} in one (a whole "
        "folder name) gives each TES client its own folder there",
    )  # fmt: skip
    tes_max_task_bytes: int = _setting(
        4 * 1024**2, within(byte_size, 1024, 8 * 1024**2),
        "largest task a client may send (its JSON, inline inputs included; more: 413)",
    )  # fmt: skip
    tes_max_executors: int = _setting(
        20, within(positive_int, 1, 1000), "most executors one task may have"
    )
    tes_fetch_private: bool = _setting(
        False, as_bool, "let http(s) inputs and outputs reach private and loopback addresses"
    )
    tes_fetch_max_bytes: int = _setting(
        1024**3, within(byte_size, 1, 1024**5), "largest http(s) input, e.g. 1G"
    )
    tes_fetch_timeout: float = _setting(
        300.0, within(parse_duration, 1, DAY), "longest wait for one http(s) input or output"
    )
    tes_staged_schemes: tuple[str, ...] = _setting(
        (), words, "other URL schemes accepted at creation (staged by the site; e.g. s3)"
    )
    tes_s3_endpoint: str = _setting(
        "", http_endpoint, "S3 server that s3:// inputs and outputs use, e.g. "
        "https://s3.eu-west-1.amazonaws.com (empty: s3:// is not staged here)",
    )  # fmt: skip
    tes_s3_region: str = _setting("us-east-1", as_str, "the S3 server's region (for signing)")
    tes_s3_credentials_file: Path | None = _setting(
        None, optional_path,
        "file of two lines: the S3 access key id, then its secret (tasks never give keys)",
    )  # fmt: skip
    tes_s3_roots: tuple[str, ...] = _setting(
        (), s3_roots,
        "bucket or bucket/prefix that s3:// URLs may be under; {client} after the bucket "
        "gives each TES client its own prefix",
    )  # fmt: skip
    tes_s3_virtual_hosts: bool = _setting(
        False, as_bool, "address buckets as bucket.host (virtual-hosted) rather than host/bucket"
    )
    tes_s3_part_bytes: int = _setting(
        16 * 1024**2, within(byte_size, 5 * 1024**2, 5 * 1024**3),
        "larger outputs go to S3 in parts of this size (multipart upload)",
    )  # fmt: skip
    tes_max_cpus: int = _setting(4, within(positive_int, 1, 4096), "most CPU cores a task may have")
    tes_max_ram_gb: float = _setting(
        8.0, within(number, 0.001, 1024**2), "most memory a task may have, in GB"
    )
    tes_max_disk_gb: float = _setting(
        10.0,
        within(number, 0.001, 1024**3),
        "most disk a task may ask for, in GB (reported, not enforced)",
    )
    tes_time_limit: float = _setting(
        24 * 3600.0,
        within(parse_duration, 1, 365 * DAY),
        "how long a task may run before it is stopped",
    )
    tes_create_wait: float = _setting(
        0.0,
        within(parse_duration, 0, 60),
        "how long POST /tasks may wait for all executors but the last to end (0: not)",
    )
    # Webhooks (appliance/webhooks.py, docs/api.md): off until a secret is set
    webhook_secret_file: Path | None = _setting(
        None, optional_path,
        "file holding the secret that signs webhook posts (16 bytes or more, e.g. "
        "openssl rand -hex 32); jobs may name a webhook only when it is set",
    )  # fmt: skip
    webhook_private: bool = _setting(
        False, as_bool, "let webhooks reach private and loopback addresses"
    )
    webhook_retry_for: float = _setting(
        86400.0, within(parse_duration, 60, 30 * DAY),
        "how long a webhook that fails is tried again (with back-off) before it is given up",
    )  # fmt: skip
    webhook_timeout: float = _setting(
        10.0, within(parse_duration, 1, 300), "longest wait for a webhook's receiver to answer"
    )
    # E-mail when a job ends (appliance/mail.py, docs/api.md): off until a server is set
    smtp_host: str = _setting(
        "", host_name, "SMTP server that sends e-mail when jobs end (empty: no e-mail)"
    )
    smtp_port: int = _setting(587, within(positive_int, 1, 65535), "its port")
    smtp_security: str = _setting(
        "starttls", one_of("starttls", "tls", "none"),
        "starttls (port 587), tls (port 465) or none (a relay on the site's own network)",
    )  # fmt: skip
    smtp_from: str = _setting(
        "appliance@localhost", as_str, "the From address of the appliance's e-mail"
    )
    smtp_credentials_file: Path | None = _setting(
        None, optional_path, "file of two lines, the SMTP user then its password (none: no login)"
    )
    smtp_timeout: float = _setting(
        30.0, within(parse_duration, 1, 300), "longest wait for the SMTP server to answer"
    )
    public_url: str = _setting(
        "", site_url,
        "the address users reach the appliance at (https://appliance.example.org): links in e-mail",
    )  # fmt: skip
    source: str = field(default="(defaults)", compare=False, metadata={"internal": True})

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        source: str = "(settings)",
        base_dir: Path | None = None,
    ) -> Settings:
        """Settings from a mapping; relative paths are taken from ``base_dir``."""
        known = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        values: dict[str, Any] = {}
        errors: list[ConfigError] = []
        for key, raw in data.items():
            spec = known.get(str(key))
            if spec is None:
                errors.append(
                    ConfigError(_unknown_key_reason(str(key)), source=source, key=str(key))
                )
                continue
            try:
                values[spec.name] = spec.metadata["parse"](raw)
            except ValueError as exc:
                errors.append(ConfigError(str(exc), source=source, key=spec.name))
        if bool(values.get("tls_certificate")) != bool(values.get("tls_key")):
            key = "tls_key" if values.get("tls_certificate") else "tls_certificate"
            errors.append(ConfigError("tls_certificate and tls_key go together: set both, or "
                                      "neither", source=source, key=key))  # fmt: skip
        if errors:
            raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
        settings = cls(**values, source=source)
        return settings.resolve_paths(base_dir or Path.cwd())

    def resolve_paths(self, base_dir: Path) -> Settings:
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path) and not value.is_absolute():
                changes[f.name] = (base_dir / value).resolve()
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, str]:
        return {key: str(getattr(self, key)) for key in self.names()}


def _unknown_key_reason(key: str) -> str:
    close = [k for k in Settings.names() if k.split("_")[0] == key.split("_")[0]]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown setting{hint}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings for this process: the file named by APPLIANCE_SETTINGS, then APPLIANCE_* vars."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "(defaults)"
    base_dir = Path.cwd()
    path_text = env.get(SETTINGS_ENV)
    if path_text:
        path = Path(path_text)
        data = read_mapping(path)
        source = str(path)
        base_dir = path.resolve().parent
        # The file's own relative paths are from its folder; overrides below from the cwd.
        file_settings = Settings.from_mapping(data, source=source, base_dir=base_dir)
    else:
        file_settings = Settings()
    overrides: dict[str, str] = {}
    errors: list[ConfigError] = []
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == SETTINGS_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in Settings.names():
            errors.append(ConfigError(_unknown_key_reason(key), source="environment", key=name))
            continue
        overrides[key] = value
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    if overrides:
        override_settings = Settings.from_mapping(overrides, source="environment")
        changes = {key: getattr(override_settings, key) for key in overrides}
        file_settings = dataclasses.replace(file_settings, **changes)
    if not path_text:
        file_settings = file_settings.resolve_paths(base_dir)
    return dataclasses.replace(file_settings, source=source)
