"""Every endpoint and error path of the API, in-process against a real MongoDB."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database
from starlette.testclient import TestClient

from appliance.messaging import WakeReceiver
from appliance.plan import plan_mapping
from appliance.proxyconf import ProxyOptions, nginx_config
from appliance.settings import Settings
from appliance.store import new_id
from appliance.web.app import create_app
from appliance.web.server import hypercorn_config
from tests.web.conftest import AS_OPERATOR

FASTA = b">a\nMKVLA\n>b\nMKV-A\n"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
DB = Database[dict[str, Any]]


def assert_json_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["message"]
    assert "Traceback" not in response.text
    return body


def uploads(settings: Settings) -> set[str]:
    return (
        {p.name for p in settings.uploads_dir.iterdir()} if settings.uploads_dir.exists() else set()
    )


def test_version(client: TestClient) -> None:
    body = client.get("/api/version").json()
    assert body["APIVersion"] == "1.1" and body["slivkaVersion"]


def test_services_and_parameters(client: TestClient) -> None:
    services = client.get("/api/services").json()["services"]
    assert [s["id"] for s in services] == ["echo"]
    service = client.get("/api/services/echo").json()
    assert service == services[0]
    assert service["@url"] == "/api/services/echo"
    assert service["presets"] == [{"id": "quiet", "name": "Quiet", "description": "",
                                   "values": {"loud": False, "count": 1}}]  # fmt: skip
    assert service["status"]["status"] == "UNKNOWN"
    assert service["status"]["timestamp"] == "1970-01-01T00:00:00"  # never tested
    params = {p["id"]: p for p in service["parameters"]}
    # A bound that is not set is left out (Jalview's client casts each one it finds).
    assert params["words"] == {"type": "text", "id": "words", "name": "Words", "description": "",
                               "required": False, "array": True, "default": None,
                               "maxLength": 50}  # fmt: skip
    assert params["count"]["min"] == 1 and params["count"]["default"] == 1
    assert params["ratio"]["maxExclusive"] is True and params["ratio"]["minExclusive"] is False
    assert params["style"]["choices"] == ["Plain", "Fancy"]
    assert params["seqs"]["mediaType"] == params["seqs"]["mimetype"] == "application/fasta"
    assert params["extra"]["condition"] == "loud"
    assert_json_error(client.get("/api/services/nope"), 404)


def test_submit_form_encoded(client: TestClient, db: DB, wakeups: Any) -> None:
    response = client.post(
        "/api/services/echo/jobs", data={"words": ["a b", "$(id)"], "count": "3"}
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/api/jobs/{job['id']}"
    assert job["@url"] == f"/api/jobs/{job['id']}"
    assert job["service"] == "echo" and job["status"] == "ACCEPTED" and job["finished"] is False
    assert TIME.match(job["submissionTime"]) and job["completionTime"] is None
    # Only what has a value, and only text: no null (Jalview's client fails on one).
    assert job["parameters"] == {"words": ["a b", "$(id)"], "count": "3", "style": "Plain"}
    stored = db["jobs"].find_one({"_id": job["id"]})
    assert stored is not None and stored["values"]["count"] == 3
    import asyncio

    # A hint only: the job is claimable by its own record, which holds all a claim reads.
    message = asyncio.run(asyncio.wait_for(wakeups.receive(), 5))
    assert message == {"kind": "submitted", "job": job["id"], "runner": "local"}
    assert stored["state"] == "ACCEPTED" and stored["lease_owner"] is None
    # Why it waits, in the same write: no scheduler has taken it yet.
    assert (
        job["waiting"]["reason"] == "scheduler" and job["waiting"]["since"] == job["submissionTime"]
    )
    assert job["waiting"]["message"] == "waiting for a scheduler to take it"
    assert stored["client"] == "testclient"  # its address, for the quotas
    assert stored["runner"] == "local" and plan_mapping(stored["plan"])["work"]["path"] == job["id"]


def test_submit_multipart_with_a_file_part(
    client: TestClient, web_settings: Settings, db: DB
) -> None:
    response = client.post("/api/services/echo/jobs", data={"count": "2"},
                           files={"seqs": ("../../etc/evil name.fa", FASTA)})  # fmt: skip
    assert response.status_code == 202, response.text
    file_id = response.json()["parameters"]["seqs"]
    assert re.match(r"^[a-z2-7]{16}$", file_id)
    assert (web_settings.uploads_dir / file_id).read_bytes() == FASTA
    record = db["files"].find_one({"_id": file_id})
    assert (
        record is not None
        and record["label"] == "evil name.fa"
        and record["media_type"] == "application/fasta"
    )
    assert uploads(web_settings) == {file_id}


def test_submit_with_an_upload_id_and_bad_ids(client: TestClient, web_settings: Settings) -> None:
    file_id = client.post("/api/files", files={"file": ("s.fa", FASTA)}).json()["id"]
    assert client.post("/api/services/echo/jobs", data={"seqs": file_id}).status_code == 202
    new_id_ = new_id()
    for bad in [
        new_id_,
        "../../etc/passwd",
        f"{file_id}/../../x",
        "/etc/hostname",
        "x" * 3000,
        "%00",
    ]:
        response = client.post("/api/services/echo/jobs", data={"seqs": bad})
        assert response.status_code == 422, (bad, response.text)
        # an id of ours that names nothing; anything else is not an id (the old codes)
        expected = "not_found" if bad in (new_id_, f"{file_id}/../../x") else "file_id"
        assert response.json()["errors"][0]["errorCode"] == expected, bad
    # In a multipart form a part without a file name is a value: here an upload's id (the
    # previous system's clients send ids beside new files in one form), not a new file.
    body = (f'--b\r\nContent-Disposition: form-data; name="seqs"\r\n\r\n{file_id}\r\n'
            "--b--\r\n").encode()  # fmt: skip
    response = client.post("/api/services/echo/jobs", content=body,
                           headers={"Content-Type": "multipart/form-data; boundary=b"})  # fmt: skip
    assert response.status_code == 202, response.text
    assert response.json()["parameters"]["seqs"] == file_id
    assert uploads(web_settings) == {file_id}  # nothing new was stored


def test_validation_errors(client: TestClient, web_settings: Settings) -> None:
    response = client.post(
        "/api/services/echo/jobs",
        data={
            "count": "0",
            "ratio": "1",
            "style": "Loud",
            "nope": "1",
            "extra": "x",
            "words": "w" * 51,
        },
        files={"seqs": ("s.fa", b"not fasta")},
    )
    assert response.status_code == 422
    codes = {e["parameter"]: e["errorCode"] for e in response.json()["errors"]}
    assert codes == {"count": "min_value", "ratio": "max_value", "style": "invalid", "nope": "unexpected",
                     "words": "max_length", "seqs": "media_type"}  # fmt: skip
    assert all(e["message"] for e in response.json()["errors"])
    assert uploads(web_settings) == set()  # the refused submission's file is gone
    response = client.post("/api/services/echo/jobs", data={"extra": "x"})
    assert [e["errorCode"] for e in response.json()["errors"]] == ["condition"]


def test_oversized_uploads_leave_nothing(
    client: TestClient, web_settings: Settings, db: DB
) -> None:
    big = b">a\n" + b"A" * 5000 + b"\n"
    assert_json_error(client.post("/api/files", files={"file": ("big.fa", big)}), 413)
    assert_json_error(client.post("/api/services/echo/jobs", files={"seqs": ("big.fa", big)}), 413)

    def endless() -> Any:
        for _ in range(2000):
            yield b"x" * 1024

    response = client.post("/api/files", content=endless(),
                           headers={"content-type": "multipart/form-data; boundary=b"})  # fmt: skip
    assert_json_error(response, 413)
    assert uploads(web_settings) == set()
    assert db["files"].count_documents({}) == 0
    # A file over the parameter's own max-size (1K) but under the upload limit: 422.
    medium = b">a\n" + b"A" * 1500 + b"\n"
    response = client.post("/api/services/echo/jobs", files={"seqs": ("m.fa", medium)})
    assert response.json()["errors"][0]["errorCode"] == "max_length"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
            "multipart/form-data; boundary=b",
            400,
        ),
        (b"garbage", "multipart/form-data; boundary=b", 400),
        (b"--b\r\nX: y\r\n\r\nabc\r\n--b--\r\n", "multipart/form-data; boundary=b", 400),
        (b"", "multipart/form-data", 400),
        (b"{}", "application/json", 415),
        (b"count=%ff", "application/x-www-form-urlencoded", 400),
        (
            b'--b\r\nContent-Disposition: form-data; name="count"\r\n\r\n\xff\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
            400,
        ),
    ],
)
def test_malformed_bodies(
    client: TestClient, web_settings: Settings, body: bytes, content_type: str, status: int
) -> None:
    for path in ("/api/files", "/api/services/echo/jobs"):
        assert_json_error(
            client.post(path, content=body, headers={"content-type": content_type}), status
        )
    assert uploads(web_settings) == set()


def test_upload_show_and_relabel(client: TestClient, web_settings: Settings) -> None:
    response = client.post(
        "/api/files", files={"file": ("", FASTA)}
    )  # the old client's empty title
    assert response.status_code == 201
    upload = response.json()
    assert response.headers["location"] == f"/api/files/{upload['id']}"
    assert upload["@content"] == f"{web_settings.uploads_url}/{upload['id']}"
    assert upload["jobId"] is None and upload["mediaType"] == "application/fasta"
    assert client.get(f"/api/files/{upload['id']}").json() == upload
    changed = client.put(
        f"/api/files/{upload['id']}", data={"label": "mine", "mediaType": "text/plain"}
    ).json()
    assert changed["label"] == "mine" and changed["mediaType"] == "text/plain"
    assert_json_error(client.put(f"/api/files/{upload['id']}", data={"mediaType": "<script>"}), 400)
    assert_json_error(client.put(f"/api/files/{upload['id']}", data={"owner": "me"}), 400)
    assert_json_error(client.get(f"/api/files/{new_id()}"), 404)
    assert_json_error(client.get("/api/files/..%2F..%2Fetc%2Fpasswd"), 404)
    assert_json_error(client.post("/api/files", files={"other": ("a", b"x")}), 400)
    assert_json_error(client.post("/api/files", data={"file": "not a file"}), 400)


def seed_job(db: DB, **fields: Any) -> str:
    job_id = new_id()
    doc = {"_id": job_id, "service": "echo", "state": "COMPLETED", "submitted_at": datetime.now(UTC),
           "completed_at": datetime.now(UTC), "parameters": {}, "values": {}, "outputs": []}  # fmt: skip
    doc.update(fields)
    db["jobs"].insert_one(doc)
    return job_id


def test_show_job_and_404s(client: TestClient, db: DB) -> None:
    job_id = seed_job(db, error=None, exit_code=0)
    body = client.get(f"/api/jobs/{job_id}").json()
    assert (
        body["status"] == "COMPLETED"
        and body["finished"] is True
        and TIME.match(body["completionTime"])
    )
    assert client.get(f"/api/services/echo/jobs/{job_id}").json() == body
    assert client.get(f"/api/v1.1/jobs/{job_id}").json() == body
    assert_json_error(client.get(f"/api/services/other/jobs/{job_id}"), 404)
    for bad in [new_id(), "short", "x" * 5000, "..%2F..", "%00"]:
        assert_json_error(client.get(f"/api/jobs/{bad}"), 404)


def test_cancel(client: TestClient, db: DB, wakeups: Any) -> None:
    running = seed_job(db, state="RUNNING")
    done = seed_job(db)
    assert client.delete(f"/api/jobs/{running}").status_code == 204
    assert db["cancels"].find_one({"_id": running}) is not None
    assert client.delete(f"/api/jobs/{done}").status_code == 204
    assert db["cancels"].find_one({"_id": done}) is None  # nothing to cancel
    assert_json_error(client.delete(f"/api/jobs/{new_id()}"), 404)
    import asyncio

    assert asyncio.run(asyncio.wait_for(wakeups.receive(), 5)) == {"kind": "cancel", "job": running}


def test_list_jobs_with_filters(client: TestClient, db: DB) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ids = [seed_job(db, state="COMPLETED" if i % 2 else "FAILED", submitted_at=now - timedelta(minutes=i))
           for i in range(6)]  # fmt: skip
    seed_job(db, service="other", submitted_at=now - timedelta(hours=1))
    client.headers.update(AS_OPERATOR)
    body = client.get("/api/jobs").json()
    assert body["totalCount"] == 7
    assert [j["id"] for j in body["jobs"][:6]] == ids  # newest first
    body = client.get("/api/jobs", params={"status": "failed", "limit": "2", "skip": "1"}).json()
    assert body["totalCount"] == 3 and [j["id"] for j in body["jobs"]] == [ids[2], ids[4]]
    assert client.get("/api/services/echo/jobs").json()["totalCount"] == 6
    assert client.get("/api/jobs", params={"service": "other"}).json()["totalCount"] == 1
    assert (
        client.get("/api/jobs", params=[("id", ids[0]), ("id", ids[1])]).json()["totalCount"] == 2
    )
    since = (now - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S")
    assert (
        client.get("/api/jobs", params={"submissionTime": f">={since}"}).json()["totalCount"] == 3
    )
    assert client.get("/api/jobs", params={"submissionTime": f"<{since}"}).json()["totalCount"] == 4
    assert client.get("/api/jobs", params={"submissionTime": since}).json()["totalCount"] == 1
    for bad in [
        {"limit": "x"},
        {"skip": "-1"},
        {"status": "DONE"},
        {"sort": "x"},
        {"submissionTime": "yesterday"},
    ]:
        assert_json_error(client.get("/api/jobs", params=bad), 400)
    assert_json_error(client.get("/api/services/nope/jobs"), 404)


def test_job_lists_are_the_operators_unless_opened(
    client: TestClient, db: DB, web_settings: Settings
) -> None:
    """A job's id is the capability to see it: lists of everyone's jobs (and their input
    ids) need the operator's token, unless the site opens them."""
    job_id = seed_job(db)
    for path in ("/api/jobs", "/api/services/echo/jobs", "/api/v1.1/jobs"):
        anonymous = client.get(path)
        assert anonymous.status_code == 401 and job_id not in anonymous.text
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        wrong = client.get(path, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 403 and job_id not in wrong.text
        assert client.get(path, headers=AS_OPERATOR).json()["totalCount"] == 1
    assert client.get(f"/api/jobs/{job_id}").status_code == 200  # by its id: anyone
    for changes, status in (({"operator_token_sha256": ""}, 403),
                            ({"public_job_lists": True}, 200)):  # fmt: skip
        with TestClient(create_app(replace(web_settings, **changes))) as other:
            assert other.get("/api/jobs").status_code == status


def test_job_files_come_from_the_record(client: TestClient, db: DB, web_settings: Settings) -> None:
    outputs = [{"id": "out", "path": "res ult.txt", "media_type": "text/plain", "name": "Result"},
               {"id": "stdout", "path": "stdout", "media_type": "text/plain", "name": "stdout"}]  # fmt: skip
    job_id = seed_job(db, outputs=outputs)
    files = client.get(f"/api/jobs/{job_id}/files").json()["files"]
    assert [f["id"] for f in files] == [f"{job_id}/res ult.txt", f"{job_id}/stdout"]
    assert files[0]["@content"] == f"{web_settings.jobs_url}/{job_id}/res%20ult.txt"
    assert files[0]["@url"] == f"/api/jobs/{job_id}/files/res%20ult.txt"
    assert files[0]["label"] == "Result" and files[0]["jobId"] == job_id
    assert client.get(f"/api/jobs/{job_id}/files/res ult.txt").json() == files[0]
    assert_json_error(client.get(f"/api/jobs/{job_id}/files/../../etc/passwd"), 404)
    assert_json_error(client.get(f"/api/jobs/{job_id}/files/missing.txt"), 404)
    assert client.get(f"/api/jobs/{seed_job(db, state='RUNNING')}/files").json() == {"files": []}


def test_openapi_and_docs(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert "/services/{service_id}/jobs" in document["paths"]
    assert client.get("/api/openapi.yaml").status_code == 200
    page = client.get("/api/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/services/{service_id}/jobs" in page.text


def test_every_error_is_json(client: TestClient) -> None:
    assert_json_error(client.get("/nowhere"), 404)
    assert_json_error(client.put("/api/version"), 405)
    assert_json_error(client.patch("/api/jobs"), 405)


def test_health(client: TestClient, web_settings: Settings) -> None:
    """Ready with the database; a scheduler address that nothing takes wake-ups at is
    said (jobs then start at the sweeps), without making the process unready."""
    assert client.get("/healthz").json() == {"status": "alive"}
    [address] = web_settings.scheduler_address
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["wakeups"][address].startswith("not connected")
    assert "no scheduler takes wake-ups at " + address in ready.json()["warnings"][0]
    receiver = WakeReceiver(address)
    try:
        for _ in range(100):
            answer = client.get("/readyz").json()
            if answer.get("wakeups", {})[address] == "connected":
                break
            time.sleep(0.05)
        assert answer == {"status": "ready", "wakeups": {address: "connected"}}
    finally:
        receiver.close()


def test_database_away_gives_503_json(tmp_path: Path, mongodb_uri: str, database_name: str) -> None:
    from tests.helpers import make_settings

    settings = make_settings(
        tmp_path, "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200", database_name
    )
    (settings.services_dir / "echo.service.yaml").write_text(
        "appliance-version: 1\nname: E\nimage: x\ncommand: echo\nrunner: local\n"
    )
    (settings.runners_dir / "local.yaml").write_text("backend: local\n")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        services = client.get("/api/services").json()["services"]  # the catalogue needs no database
        assert services[0]["status"]["status"] == "UNKNOWN"
        assert_json_error(client.post("/api/services/echo/jobs"), 503)
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200


def test_usage_statistics_and_the_reference_page_as_before(client: TestClient, db: DB) -> None:
    """``/api/stats`` in the previous system's shape (its key's spelling too), counted at
    submission; ``/api/reference`` is the API's page, as before."""
    assert client.get("/api/stats").json() == {"usageStatictics": []}
    for _ in range(3):
        assert client.post("/api/services/echo/jobs", data={"words": "hi"}).status_code == 202
    month = datetime.now(UTC).strftime("%Y-%m")
    assert client.get("/api/stats").json() == {
        "usageStatictics": [{"month": month, "service": "echo", "count": 3}]}  # fmt: skip
    page = client.get("/api/reference")
    assert page.status_code == 200 and "/services/{service_id}/jobs" in page.text


def test_the_proxy_drops_idle_upstream_connections_before_the_web_process_does(
    web_settings: Settings,
) -> None:
    """A request nginx sends on a kept-alive connection just as hypercorn closes it for
    being idle fails ("upstream prematurely closed connection": a 503 seen once in CI),
    and a POST is not retried. nginx must give such connections up first."""
    conf = nginx_config(web_settings, ProxyOptions())
    found = re.search(r"upstream appliance_web \{[^}]*keepalive_timeout (\d+)s;", conf)
    assert found is not None, conf
    assert int(found.group(1)) < hypercorn_config(web_settings).keep_alive_timeout
