"""End to end through the real pieces: nginx (configured by ``appliance proxy-config``) in
front of ``appliance web`` on hypercorn, ``appliance scheduler`` running jobs in Docker,
MongoDB, and the previous system's own Python client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient
from slivka_client import SlivkaClient

from tests.web.stack import FASTA, Stack


def test_the_old_client_does_everything_through_the_proxy(stack: Stack, tmp_path: Path) -> None:
    client = SlivkaClient(stack.proxy + "/")
    assert client.version.API == "1.1"
    service = client["upper"]
    assert service.name == "Upper case"
    assert {p.id for p in service.parameters} == {"input", "tag", "delay"}
    source = tmp_path / "seqs.fa"
    source.write_text(FASTA)
    uploaded = client.upload_file(str(source), "seqs.fa")
    assert uploaded.label == "seqs.fa"
    copy = tmp_path / "copy.fa"
    uploaded.dump(str(copy))  # downloaded through the proxy
    assert copy.read_text() == FASTA
    job = service.submit_job(data={"input": uploaded, "tag": "first"})
    assert job.parameters["input"] == uploaded.id
    deadline = time.monotonic() + 120
    while job.status not in ("COMPLETED", "FAILED", "ERROR") and time.monotonic() < deadline:
        time.sleep(0.3)
        job.reload()
    assert job.status == "COMPLETED"
    assert job.completion_time is not None
    files = {f.path: f for f in job.files}
    assert set(files) == {"result.txt", "stdout", "stderr"}
    result = tmp_path / "result.txt"
    files["result.txt"].dump(str(result))
    assert result.read_text() == FASTA.upper()
    assert (stack.settings.jobs_dir / job.id / "result.txt").read_text() == FASTA.upper()
    same = client.get_file(f"{job.id}/result.txt")
    assert same.content_url.endswith(f"/media/jobs/{job.id}/result.txt")


def test_file_bytes_come_from_the_proxy_not_the_app(stack: Stack) -> None:
    data = b">x\n" + bytes(range(65, 91)) * 100 + b"\n"
    upload = httpx.post(f"{stack.proxy}/api/files", files={"file": ("x.fa", data)}).json()
    content = upload["@content"]
    via_proxy = httpx.get(stack.proxy + content)
    assert via_proxy.status_code == 200 and via_proxy.content == data
    assert via_proxy.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(stack.web + content).status_code == 404  # the app serves no bytes
    assert httpx.get(f"{stack.proxy}/media/uploads/../../etc/passwd").status_code in (400, 404)


def test_hidden_and_linked_files_are_not_served(stack: Stack) -> None:
    job_dir = stack.settings.jobs_dir / "fakejob000000000"
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / ".exit.json").write_text("{}")
    (job_dir / "secret").symlink_to("/etc/hostname")
    (job_dir / "ok.txt").write_text("fine")
    for name in (".exit.json", "secret", "ok.txt"):  # no job recorded it as its output
        response = httpx.get(f"{stack.proxy}/media/jobs/fakejob000000000/{name}")
        assert response.status_code in (403, 404)
        assert "/etc" not in response.text


def test_oversized_upload_is_refused_at_the_proxy_with_json(stack: Stack) -> None:
    before = set(stack.settings.uploads_dir.iterdir())
    big = b">x\n" + b"A" * (3 * 1024 * 1024) + b"\n"
    response = httpx.post(f"{stack.proxy}/api/files", files={"file": ("big.fa", big)})
    assert response.status_code == 413
    assert response.json()["status"] == 413
    # Just over the app's limit but under nginx's: the app refuses it, also as JSON.
    medium = b">x\n" + b"A" * (70 * 1024) + b"\n"
    response = httpx.post(f"{stack.proxy}/api/files", files={"file": ("m.fa", medium)})
    assert response.status_code == 413 and response.json()["status"] == 413
    assert set(stack.settings.uploads_dir.iterdir()) == before


def test_errors_through_the_proxy_are_json(stack: Stack) -> None:
    for url in ("/api/nope", "/api/jobs/unknownjob000000", "/somewhere", "/media/jobs/none/x"):
        response = httpx.get(stack.proxy + url)
        assert response.status_code == 404
        assert response.json()["status"] == 404


def test_fifty_concurrent_submissions(stack: Stack) -> None:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.proxy, timeout=60) as client:
            upload = (
                await client.post("/api/files", files={"file": ("s.fa", FASTA.encode())})
            ).json()

            async def one(i: int) -> httpx.Response:
                if i % 2:
                    return await client.post(
                        "/api/services/upper/jobs", data={"input": upload["id"], "tag": f"t{i}"}
                    )
                files = {"input": (f"s{i}.fa", f">s{i}\nmk\n".encode())}
                return await client.post(
                    "/api/services/upper/jobs", data={"tag": f"t{i}"}, files=files
                )

            return await asyncio.gather(*(one(i) for i in range(50)))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [202] * 50
    jobs = [r.json() for r in responses]
    assert len({j["id"] for j in jobs}) == 50
    for i, job in enumerate(jobs):
        assert job["parameters"]["tag"] == f"t{i}"
        stored = httpx.get(f"{stack.proxy}/api/jobs/{job['id']}").json()
        assert stored["parameters"]["tag"] == f"t{i}"
    # They all run, each with its own input.
    deadline = time.monotonic() + 300
    pending = {j["id"]: i for i, j in enumerate(jobs)}
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            if httpx.get(f"{stack.proxy}/api/jobs/{job_id}").json()["finished"]:
                del pending[job_id]
        time.sleep(0.5)
    assert not pending
    for i, job in enumerate(jobs):
        result = (stack.settings.jobs_dir / job["id"] / "result.txt").read_text()
        assert result == (FASTA.upper() if i % 2 else f">S{i}\nMK\n")


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, database_name: str
) -> Iterator[Stack]:
    from tests.web.stack import running_stack

    with running_stack(tmp_path_factory.mktemp("e2e"), mongodb_uri, database_name) as stack:
        yield stack


def test_redirects_and_locations_keep_the_proxys_host_and_port(stack: Stack) -> None:
    """The proxy listens on a port of its own (not 80): a redirect the app makes must
    send the client back to that port, and every GET of a resource says where it is."""
    port = stack.proxy.rsplit(":", 1)[1]
    moved = httpx.get(f"{stack.proxy}/api/jobs/?service=upper", follow_redirects=False)
    assert moved.status_code == 307
    assert moved.headers["location"] == f"http://127.0.0.1:{port}/api/jobs?service=upper"
    followed = httpx.get(f"{stack.proxy}/api/jobs/?service=upper", follow_redirects=True)
    assert followed.status_code == 403 and followed.json()["status"] == 403  # the operator's
    forwarded = httpx.get(f"{stack.proxy}/api/jobs/", headers={"X-Forwarded-Proto": "https"},
                          follow_redirects=False)  # fmt: skip
    assert forwarded.headers["location"].startswith(("http://", "https://"))
    service = httpx.get(f"{stack.proxy}/api/services/upper")
    assert service.headers["location"] == service.json()["@url"] == "/api/services/upper"
    upload = httpx.post(f"{stack.proxy}/api/files",
                        files={"file": ("x.fa", b">a\nMK\n", "application/x-mine")}).json()  # fmt: skip
    assert upload["mediaType"] == "application/x-mine"  # as the client sent it
    shown = httpx.get(f"{stack.proxy}/api/files/{upload['id']}")
    assert shown.headers["location"] == upload["@url"]
    job = httpx.post(f"{stack.proxy}/api/services/upper/jobs",
                     files={"input": ("s.fa", FASTA.encode(), "text/plain; charset=UTF-8")}).json()  # fmt: skip
    for url in (f"/api/jobs/{job['id']}", f"/api/services/upper/jobs/{job['id']}"):
        answer = httpx.get(stack.proxy + url)
        assert answer.headers["location"] == f"/api/jobs/{job['id']}"
    part = httpx.get(f"{stack.proxy}/api/files/{job['parameters']['input']}").json()
    assert part["mediaType"] == "text/plain"  # the part's own type, without its parameters
    deadline = time.monotonic() + 60
    while not httpx.get(f"{stack.proxy}/api/jobs/{job['id']}").json()["finished"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    output = httpx.get(f"{stack.proxy}/api/jobs/{job['id']}/files/result.txt")
    assert output.headers["location"] == output.json()["@url"]


def test_the_pages_and_their_static_files_through_the_proxy(stack: Stack) -> None:
    front = httpx.get(stack.proxy + "/")
    assert front.status_code == 200 and front.headers["content-type"].startswith("text/html")
    assert 'href="/services/upper"' in front.text
    assert "script-src 'self'" in front.headers["content-security-policy"]
    for name, kind in (("app.css", "text/css"), ("app.js", "text/javascript")):
        url = next(u for u in front.text.split('"') if u.startswith(f"/static/{name}?v="))
        asset = httpx.get(stack.proxy + url)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert "immutable" in asset.headers["cache-control"]
        assert asset.content == httpx.get(stack.proxy + f"/static/{name}").content
        assert httpx.get(stack.web + url).status_code == 404  # from the proxy, not the app
    for path in ("/static/", "/static/../pyproject.toml", "/static/.hidden", "/static/nope.js"):
        assert httpx.get(stack.proxy + path).status_code in (403, 404), path
    # the page routes pass through; the app's internal one does not
    form = httpx.get(stack.proxy + "/services/upper")
    assert form.status_code == 200 and 'action="/services/upper"' in form.text
    assert httpx.get(stack.proxy + "/_internal/served").status_code == 404
    assert httpx.get(stack.proxy + "/my-jobs").status_code == 200


def test_a_page_submission_through_the_proxy_runs_and_shows_its_result(stack: Stack) -> None:
    sent = httpx.post(stack.proxy + "/services/upper", data={"input.text": FASTA, "tag": "<b>x</b>"},
                      files={"input": ("", b"", "application/octet-stream")})  # fmt: skip
    assert sent.status_code == 303, sent.text
    job_url = stack.proxy + sent.headers["location"]
    deadline = time.monotonic() + 60
    done = 'id="job-status" class="status status-completed"'
    while done not in (page := httpx.get(job_url)).text and time.monotonic() < deadline:
        time.sleep(0.3)
    assert done in page.text
    assert FASTA.upper().replace(">", "&gt;") in page.text  # the result's preview
    assert "<b>x</b>" not in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text
    link = next(u for u in page.text.split('"') if u.startswith("/media/jobs/"))
    assert httpx.get(stack.proxy + link).text == FASTA.upper()
    cross = httpx.post(stack.proxy + "/services/upper", data={"input.text": FASTA},
                       headers={"Origin": "https://elsewhere.example"})  # fmt: skip
    assert cross.status_code == 403


def test_the_proxys_request_id_reaches_the_job_and_its_access_log(stack: Stack) -> None:
    sent = httpx.post(f"{stack.proxy}/api/services/upper/jobs",
                      files={"input": ("in.fa", FASTA.encode())})  # fmt: skip
    assert sent.status_code == 202
    rid = sent.headers["x-request-id"]
    assert len(rid) == 32  # nginx's $request_id, passed on by the app
    client: MongoClient[dict[str, object]] = MongoClient(stack.settings.mongodb_uri)
    job = client[stack.settings.mongodb_database]["jobs"].find_one({"_id": sent.json()["id"]})
    client.close()
    assert job is not None and job["request_id"] == rid
    log = stack.settings.jobs_dir.parent / "nginx" / "access.log"
    deadline = time.monotonic() + 10
    while f"rid={rid}" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(x for x in log.read_text().splitlines() if f"rid={rid}" in x)
    assert '"POST /api/services/upper/jobs HTTP/1.1" 202' in line


def test_the_metrics_pass_the_proxy_only_for_the_operator(stack: Stack) -> None:
    answer = httpx.get(f"{stack.proxy}/metrics")
    assert answer.status_code == 403 and "operator" in answer.json()["message"]
