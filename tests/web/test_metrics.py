"""The web process's metrics: who may read them, and that they count what happened, also
with two worker processes answering in turn (no count lost or doubled)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pymongo.database import Database
from starlette.testclient import TestClient

from appliance.tokens import token_hash
from tests.helpers import make_settings, settings_env
from tests.web.conftest import AS_OPERATOR, ECHO, OPERATOR
from tests.web.stack import free_port, wait_http


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_only_the_operator_reads_the_metrics_unless_they_are_public(
    client: TestClient, web_settings: object, db: Database[dict[str, object]]
) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    answer = client.get("/metrics", headers=AS_OPERATOR)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert "appliance_http_requests_total" in answer.text


def test_submissions_and_requests_are_counted(client: TestClient) -> None:
    before = client.get("/metrics", headers=AS_OPERATOR).text
    assert client.post("/api/services/echo/jobs", data={"words": "hi"}).status_code == 202
    assert client.post("/api/services/echo/jobs", data={"count": "99"}).status_code == 422
    big = {"seqs": ("big.fa", b">a\n" + b"A" * 5000)}  # over the 2000-byte upload limit
    assert client.post("/api/services/echo/jobs", files=big).status_code == 413
    client.get("/api/jobs/aaaaaaaaaaaaaaaa")
    client.get("/wp-admin/setup.php")
    after = client.get("/metrics", headers=AS_OPERATOR).text
    for outcome in ("accepted", "invalid", "refused"):
        grew = value(after, "appliance_submissions_total", service="echo", outcome=outcome) - value(
            before, "appliance_submissions_total", service="echo", outcome=outcome)  # fmt: skip
        assert grew == 1, outcome
    posted = {"route": "/api/services/{service}/jobs", "method": "POST", "status": "202"}
    assert value(after, "appliance_http_requests_total", **posted) == value(
        before, "appliance_http_requests_total", **posted) + 1  # fmt: skip
    missing = {"route": "/api/jobs/{job}", "method": "GET", "status": "404"}
    assert value(after, "appliance_http_requests_total", **missing) >= 1
    assert value(after, "appliance_http_requests_total", route="(unmatched)", method="GET",
                 status="404") >= 1  # a scanner's paths do not make labels  # fmt: skip
    routes = {
        labels for (name, labels) in samples(after) if name == "appliance_http_requests_total"
    }
    assert not any("wp-admin" in str(labels) for labels in routes)
    for index in range(30):  # a method made up for each request makes no new series
        client.request(f"BREW{index}", "/api/services")
    methods = {dict(labels).get("method") for (name, labels) in
               samples(client.get("/metrics", headers=AS_OPERATOR).text)
               if name == "appliance_http_requests_total"}  # fmt: skip
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other"}
    assert "other" in methods


def test_two_workers_count_every_submission_once(
    tmp_path: Path, mongodb_uri: str, database_name: str, db: Database[dict[str, object]]
) -> None:
    port = free_port()
    settings = make_settings(tmp_path, mongodb_uri, database_name, web_workers=2,
                             web_bind=f"127.0.0.1:{port}", metrics_public=True,
                             operator_token_sha256=token_hash(OPERATOR))  # fmt: skip
    (settings.runners_dir / "local.yaml").write_text("backend: local\n")
    (settings.services_dir / "echo.service.yaml").write_text(ECHO)
    web = subprocess.Popen([sys.executable, "-m", "appliance", "web"], env=settings_env(settings))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz")
        for i in range(40):  # a connection each: the kernel spreads them over both workers
            with httpx.Client(base_url=base) as one:
                assert (
                    one.post("/api/services/echo/jobs", data={"words": f"w{i}"}).status_code == 202
                )
        seen = set()
        for _ in range(10):
            with httpx.Client(base_url=base) as one:
                text = one.get("/metrics").text
            seen.add(value(text, "appliance_submissions_total", service="echo", outcome="accepted"))
        assert seen == {40.0}
    finally:
        web.terminate()
        assert web.wait(30) == 0
