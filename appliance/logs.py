"""The processes' logs: text lines or JSON lines (setting ``log_format``), with the
request id of the HTTP request being served and, where a message is about a job, its job
id, service and runner as fields (``log.info(..., extra=job_fields(job))``)."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
FIELDS = ("request_id", "job_id", "service", "runner", "method", "path", "status",
          "duration_ms", "client")  # fmt: skip
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def job_fields(job: Any) -> dict[str, Any]:
    """The fields a message about a job carries."""
    return {"job_id": str(job.get("_id")), "service": job.get("service"),
            "runner": job.get("runner"), "request_id": job.get("request_id")}  # fmt: skip


class RequestIdFilter(logging.Filter):
    """Gives each record the request id of the request being served (if any)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = [f"{n}={getattr(record, n)}" for n in ("request_id", "job_id")
                 if getattr(record, n, None) is not None and f"{getattr(record, n)}" not in text]  # fmt: skip
        return f"{text} [{' '.join(extra)}]" if extra else text


def setup(level: str, log_format: str) -> None:
    """The root logger's one handler (stderr), in the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO: each file staged or webhook posted would be a line,
    # and the scheduler says what failed itself. DEBUG still shows them.
    logging.getLogger("httpx").setLevel(logging.WARNING if root.level > logging.DEBUG else level)
