"""Request ids: taken from the proxy, answered, logged with the request, kept with the job."""

from __future__ import annotations

import json
import logging

import pytest
from pymongo.database import Database
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from appliance.logs import JsonFormatter
from appliance.web.requests_log import RequestIds


def test_the_proxys_request_id_is_answered_logged_and_kept_with_the_job(
    client: TestClient, db: Database[dict[str, object]], caplog: pytest.LogCaptureFixture
) -> None:
    rid = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    with caplog.at_level(logging.INFO):
        answer = client.post("/api/services/echo/jobs", data={"words": "hi"},
                             headers={"X-Request-Id": rid, "X-Real-IP": "192.0.2.7"})  # fmt: skip
    assert answer.status_code == 202 and answer.headers["x-request-id"] == rid
    job = db["jobs"].find_one({"_id": answer.json()["id"]})
    assert job is not None and job["request_id"] == rid
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    accepted = [line for line in lines if line.get("job_id") == job["_id"]]
    assert accepted and accepted[0]["request_id"] == rid and accepted[0]["service"] == "echo"
    logged = [line for line in lines if line["logger"] == "appliance.access"]
    assert logged == [{**logged[0], "method": "POST", "path": "/api/services/echo/jobs",
                       "status": 202, "client": "192.0.2.7", "request_id": rid}]  # fmt: skip


def test_without_a_plausible_id_one_is_made(client: TestClient) -> None:
    made = client.get("/api/version").headers["x-request-id"]
    assert len(made) == 32 and made.isalnum()
    for bad in ("short", "<script>alert(1)</script>", "x" * 65):
        answer = client.get("/api/version", headers={"X-Request-Id": bad})
        assert answer.headers["x-request-id"] != bad and len(answer.headers["x-request-id"]) == 32
    assert client.get("/api/version").headers["x-request-id"] != made


def test_health_checks_are_not_in_the_access_log_at_info(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="appliance.access"):
        client.get("/healthz")
        client.get("/api/version")
    paths = [r.path for r in caplog.records if r.name == "appliance.access"]  # type: ignore[attr-defined]
    assert paths == ["/api/version"]


def test_a_url_cannot_forge_an_access_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="appliance.access"):
        client.get("/api/jobs/x%0A127.0.0.1%20%22GET%20/admin%22%20200%0D%1B[2J")
    [record] = [r for r in caplog.records if r.name == "appliance.access"]
    line = record.getMessage()
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "\\n127.0.0.1" in line  # the newline is there, written as an escape


@pytest.mark.parametrize("reads_body", [True, False])
def test_an_answer_sent_before_the_body_was_read_closes_the_connection(reads_body: bool) -> None:
    """A refusal made before the upload was read (a quota's 429) leaves the body on the
    connection: it must be closed, and the proxy told so, or the proxy sends the next
    request on it just as the server closes it (seen as a 503 in a CI run)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if reads_body:
            while (await receive()).get("more_body", False):
                pass
        await send({"type": "http.response.start", "status": 429, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    client = TestClient(RequestIds(app, access_log="off"))  # no lifespan: a bare app
    sent = client.post("/api/files", content=b"x" * 600)
    empty = client.get("/api/files")
    assert sent.status_code == 429 and sent.headers["x-request-id"]
    assert (sent.headers.get("connection") == "close") is not reads_body
    assert "connection" not in empty.headers  # nothing sent, nothing left to read
