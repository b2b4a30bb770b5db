"""The processes' log lines: JSON with the request id and the job's fields, or text."""

from __future__ import annotations

import json
import logging

from appliance.logs import REQUEST_ID, JsonFormatter, RequestIdFilter, TextFormatter, job_fields


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("appliance.test", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(made, key, value)
    RequestIdFilter().filter(made)
    return made


def test_json_lines_carry_the_request_id_and_the_jobs_fields() -> None:
    token = REQUEST_ID.set("rid-0123456789")
    try:
        job = {"_id": "j1", "service": "clustalo", "runner": "docker", "state": "ACCEPTED"}
        line = json.loads(JsonFormatter().format(record('job "j1" accepted', **job_fields(job))))
    finally:
        REQUEST_ID.reset(token)
    assert line["message"] == 'job "j1" accepted' and line["level"] == "INFO"
    assert line["request_id"] == "rid-0123456789"
    assert (line["job_id"], line["service"], line["runner"]) == ("j1", "clustalo", "docker")
    assert line["time"].endswith("+00:00")


def test_a_line_outside_any_request_has_no_request_id() -> None:
    line = json.loads(JsonFormatter().format(record("tick")))
    assert "request_id" not in line and "job_id" not in line


def test_text_lines_name_the_request_and_the_job_once() -> None:
    token = REQUEST_ID.set("rid-abcdefgh")
    try:
        text = TextFormatter().format(record("job j2 COMPLETED", job_id="j2"))
    finally:
        REQUEST_ID.reset(token)
    assert text.endswith("job j2 COMPLETED [request_id=rid-abcdefgh]")
