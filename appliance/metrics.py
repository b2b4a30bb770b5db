"""Prometheus metrics of the web process and the scheduler (the one module that knows
prometheus-client).

With several web workers (separate processes) the supervisor gives them one folder in
``PROMETHEUS_MULTIPROC_DIR`` before they start; each worker writes its counters and
histograms there and a scrape of any worker sums all of them, so no count is lost or
doubled whichever worker answers. A single process keeps them in memory.

The scheduler's are served on ``scheduler_metrics_bind`` (off by default); the web
process's at ``/metrics`` (the operator's token, or the setting ``metrics_public``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from appliance.settings import Settings

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0)

# -- the web process --------------------------------------------------------------------
HTTP_REQUESTS = Counter("appliance_http_requests", "HTTP requests answered",
                        ["route", "method", "status"])  # fmt: skip
HTTP_SECONDS = Histogram("appliance_http_request_duration_seconds",
                         "time to answer an HTTP request", ["route"], buckets=DURATIONS)  # fmt: skip
SUBMISSIONS = Counter("appliance_submissions", "job submissions by service and outcome "
                      "(accepted, reused, rejected, invalid, refused)", ["service", "outcome"])  # fmt: skip

# -- the scheduler ----------------------------------------------------------------------
JOBS_STARTED = Counter("appliance_jobs_started", "jobs handed to a runner",
                       ["service", "runner"])  # fmt: skip
JOBS_ENDED = Counter("appliance_jobs_ended", "jobs that ended, by their final state",
                     ["service", "runner", "state"])  # fmt: skip
WAIT_SECONDS = Histogram("appliance_job_wait_seconds", "from submission to the runner's start",
                         ["service"], buckets=JOB_SECONDS)  # fmt: skip
RUN_SECONDS = Histogram("appliance_job_run_seconds", "from start to end of a job",
                        ["service"], buckets=JOB_SECONDS)  # fmt: skip
CLAIM_SECONDS = Histogram("appliance_claim_duration_seconds", "claiming an accepted job",
                          buckets=DURATIONS)  # fmt: skip
RENEW_SECONDS = Histogram("appliance_lease_renewal_duration_seconds",
                          "renewing the leases of the jobs held", buckets=DURATIONS)  # fmt: skip
RUNNER_ERRORS = Counter("appliance_runner_errors", "calls to a runner that failed", ["runner"])

# -- both -------------------------------------------------------------------------------
DATABASE_ERRORS = Counter("appliance_database_errors", "MongoDB operations that failed, by "
                          "kind (refused, retried, unavailable), and clients replaced after "
                          "an outage (reconnected)", ["kind"])  # fmt: skip


class HeldJobs(Collector):
    """The scheduler's jobs right now, by runner and state (queued, running, ...)."""

    def __init__(self, counts: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("appliance_jobs_held", "jobs this scheduler follows, by "
                                   "runner and state", labels=["runner", "state"])  # fmt: skip
        for runner, state, count in self.counts():
            family.add_metric([runner, state], count)
        yield family


class VolumeSpace(Collector):
    """The uploads and jobs volumes' size and free bytes, read at each scrape, and the
    percentage at which readiness warns (an alert rule's threshold)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from appliance.diskspace import volumes

        size = GaugeMetricFamily("appliance_volume_size_bytes", "bytes a volume has for "
                                 "its users", labels=["volume"])  # fmt: skip
        free = GaugeMetricFamily("appliance_volume_free_bytes", "bytes still free on a "
                                 "volume", labels=["volume"])  # fmt: skip
        for space in volumes(self.settings):
            size.add_metric([space.volume], space.size)
            free.add_metric([space.volume], space.free)
        yield size
        yield free
        yield GaugeMetricFamily("appliance_volume_warning_percent", "how full a volume may "
                                "be before readiness warns (0: never)",
                                value=self.settings.disk_warning_percent)  # fmt: skip


def registry(*extra: Collector) -> Any:
    """The registry a scrape reads: every worker's, with several web workers, and the
    ``extra`` collectors (read afresh at each scrape)."""
    if os.environ.get(MULTIPROCESS_ENV):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        if not extra:
            return REGISTRY
        collected = CollectorRegistry()
        collected.register(_Everything(REGISTRY))
    for collector in extra:
        collected.register(collector)
    return collected


class _Everything(Collector):
    """Another registry's metrics, as one collector of a scrape's own registry."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Iterable[Any]:
        return self.source.collect()  # type: ignore[no-any-return]


def scrape(*extra: Collector) -> bytes:
    return bytes(generate_latest(registry(*extra)))


_HELD: list[HeldJobs] = []
_SPACE: list[VolumeSpace] = []


def serve(bind: str, held: Callable[[], Iterable[tuple[str, str, int]]], settings: Settings) -> Any:
    """The scheduler's metrics over HTTP on ``bind`` (HOST:PORT), with its held jobs and
    the volumes' space; returns the server (``shutdown()`` stops it)."""
    from prometheus_client import REGISTRY

    if _HELD:
        _HELD[0].counts = held  # one collector per process, following the latest scheduler
        _SPACE[0].settings = settings
    else:
        _HELD.append(HeldJobs(held))
        _SPACE.append(VolumeSpace(settings))
        REGISTRY.register(_HELD[0])
        REGISTRY.register(_SPACE[0])
    host, _, port = bind.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1")
    return server


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def method_of(method: str) -> str:
    """A request's method as a label: one of the few HTTP defines, else "other" (a
    client sending a new method each time must not make a new series each time)."""
    return method if method in METHODS else "other"


def status_of(status: int) -> str:
    return str(status) if 100 <= status <= 599 else "other"


def route_of(path: str) -> str:
    """A request path as a route with its ids replaced (bounded label values)."""
    parts = path.strip("/").split("/")
    placeholders = {"services": "{service}", "jobs": "{job}", "files": "{file}", "tasks": "{task}"}
    out: list[str] = []
    for index, part in enumerate(parts):
        before = parts[index - 1] if index else ""
        if before in placeholders and not (before == "jobs" and part in ("", "files")):
            out.append(placeholders[before])
            if before == "files":
                break  # a file's path may have more parts
            continue
        out.append(part)
    return "/" + "/".join(out)
