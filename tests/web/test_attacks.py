"""What a job, or one client, can do to the appliance and to everyone else: attacks tried
as an attacker would, through the real proxy, web process, scheduler and Docker engine.

A job here is a tool taken over by its input: the ``planter`` service runs whatever shell
script it is given, in the same locked-down container as any tool."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance.web.quotas import COUNT_AGE
from tests.helpers import TEST_IMAGE
from tests.web.stack import FASTA, Stack, running_stack

PLANTER = f"""\
appliance-version: 1
name: Planter
description: Runs a shell script, as a tool that its input took over would.
image: {TEST_IMAGE}
runner: docker
resources: {{memory: 64M, time-limit: 5m}}
parameters:
  script: {{name: Script, type: text}}
command: sh -c
args:
  script: {{arg: "$(value)"}}
outputs:
  anything: {{path: "*", name: Anything, media-type: text/plain}}
"""
# Every name the appliance writes or reads in (or, before, beside) a job's directory.
APPLIANCE_NAMES = ["stdout", "stderr", ".exit.json", ".exit.json.tmp", ".exit-1.json",
                   ".waiting.json", ".waiting.json.tmp", ".records", ".slurm-0.log"]  # fmt: skip
EMBEDDER = "https://embedder.example"
FINAL = {"COMPLETED", "FAILED", "ERROR", "INTERRUPTED", "DELETED", "REJECTED"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str,
          database_name: str) -> Iterator[Stack]:  # fmt: skip
    root = tmp_path_factory.mktemp("attacks")
    runners = {"docker": "backend: docker\noptions: {stop_grace: 1, slots: 4}\n"}
    with running_stack(root, mongodb_uri, database_name, services={"planter": PLANTER},
                       runners=runners, proxy_client_rate=20, allowed_origins=[EMBEDDER],
                       proxy_client_connections=32,
                       job_max_output_bytes=2 * 1024**2) as stack:  # fmt: skip
        yield stack


def submit(stack: Stack, service: str, **data: str) -> str:
    files = {}
    if service == "upper" and "input" not in data:
        files = {"input": ("in.fa", FASTA.encode(), "application/fasta")}
    response = httpx.post(f"{stack.proxy}/api/services/{service}/jobs", data=data, files=files)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait(stack: Stack, job_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while (state := httpx.get(f"{stack.proxy}/api/jobs/{job_id}").json()["status"]) not in FINAL:
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        time.sleep(0.1)
    return str(state)


def test_a_job_cannot_make_the_appliance_write_through_or_block_on_what_it_left(
    stack: Stack,
) -> None:
    """Symlinks to another user's upload and to another job's output, and FIFOs, under
    every name the appliance uses: the victims stay byte-identical, and other jobs keep
    starting and ending on time."""
    upload = httpx.post(f"{stack.proxy}/api/files",
                        files={"file": ("v.fa", b">v\nVICTIM\n", "application/fasta")}).json()  # fmt: skip
    victim_job = submit(stack, "upper")
    assert wait(stack, victim_job) == "COMPLETED"
    victims = [stack.settings.uploads_dir / upload["id"],
               stack.settings.jobs_dir / victim_job / "result.txt"]  # fmt: skip
    before = {path: path.read_bytes() for path in victims}
    targets = [f"../{victim_job}/result.txt", str(victims[0]), str(victims[1])]
    scripts = [
        "; ".join(f"ln -sf {target} /job/{name}" for name in APPLIANCE_NAMES) for target in targets
    ] + ["; ".join(f"mkfifo /job/{name}" for name in APPLIANCE_NAMES)]
    # ... and left while the job still runs, for the appliance's writes at its end
    scripts += [f"sleep 1; {script}" for script in scripts]
    planters = [submit(stack, "planter", script=script) for script in scripts]
    began = time.monotonic()
    others = [submit(stack, "upper") for _ in range(4)]
    for job_id in others:
        assert wait(stack, job_id, timeout=30) == "COMPLETED"
    others_took = time.monotonic() - began
    ends = {job_id: wait(stack, job_id, timeout=30) for job_id in planters}
    assert {path: path.read_bytes() for path in victims} == before
    assert others_took < 20, others_took  # a blocked status round would stall them all
    assert set(ends.values()) <= {"COMPLETED", "FAILED", "ERROR"}, ends
    # The planters' own kept output is theirs: regular files, not the victims'
    for job_id in planters:
        stdout = stack.settings.jobs_dir / job_id / "stdout"
        assert not stdout.is_symlink() and stdout.is_file(), job_id
        listed = httpx.get(f"{stack.proxy}/api/jobs/{job_id}/files").json()["files"]
        for entry in listed:
            body = httpx.get(stack.proxy + entry["@content"])
            assert b"VICTIM" not in body.content and FASTA.upper().encode() not in body.content


def test_a_link_in_the_job_directory_is_never_an_output(stack: Stack, tmp_path: Path) -> None:
    """Links to files and folders elsewhere are not listed as outputs, not served, and
    cannot be passed to a later job as its input."""
    secret = stack.settings.uploads_dir.parent / "secret.txt"
    secret.write_text("SECRET\n")
    script = (f"ln -s {secret} /job/a.txt; mkdir /job/d; ln -s {secret.parent} /job/d/e; "
              f"ln -s {secret.parent} /job/up; echo fine > /job/ok.txt")  # fmt: skip
    job_id = submit(stack, "planter", script=script)
    assert wait(stack, job_id) == "COMPLETED"
    listed = {
        f["path"] for f in httpx.get(f"{stack.proxy}/api/jobs/{job_id}/files").json()["files"]
    }
    assert "ok.txt" in listed and not listed & {"a.txt", "d/e", "up", "up/secret.txt"}
    for path in ("a.txt", "up/secret.txt", "d/e/secret.txt"):
        served = httpx.get(f"{stack.proxy}/media/jobs/{job_id}/{path}")
        assert served.status_code in (403, 404) and b"SECRET" not in served.content, path
    reused = httpx.post(f"{stack.proxy}/api/services/upper/jobs", data={"input": f"{job_id}/a.txt"})
    assert reused.status_code == 422, reused.text


def raw(
    stack: Stack, request: bytes, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is; the status, headers and body of the answer."""
    host, port = stack.proxy.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10,
                                  source_address=(source, 0)) as sock:  # fmt: skip
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def test_every_error_the_proxy_makes_itself_is_json(stack: Stack) -> None:
    upload = httpx.post(f"{stack.proxy}/api/files",
                        files={"file": ("e.fa", b">e\nMKV\n", "application/fasta")}).json()  # fmt: skip
    content = upload["@content"]
    cases = {
        "no Host": (b"GET /api/services HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        "another host name": (b"GET /api/services HTTP/1.1\r\nHost: rebound.example\r\n"
                              b"Connection: close\r\n\r\n", 421),
        "a failed precondition": (f"GET {content} HTTP/1.1\r\nHost: localhost\r\nIf-Unmodified-"
                                  "Since: Thu, 01 Jan 1970 00:00:00 GMT\r\nConnection: close"
                                  "\r\n\r\n".encode(), 412),
        "a range beyond the file": (f"GET {content} HTTP/1.1\r\nHost: localhost\r\n"
                                    "Range: bytes=99999-\r\nConnection: close\r\n\r\n".encode(), 416),
        "headers too large": (b"GET /api/services HTTP/1.1\r\nHost: localhost\r\nX-Big: "
                              + b"a" * 20000 + b"\r\nConnection: close\r\n\r\n", 431),
        "an unknown transfer encoding": (b"POST /api/files HTTP/1.1\r\nHost: localhost\r\n"
                                         b"Transfer-Encoding: gzip\r\nConnection: close\r\n\r\n", 501),
        "a write to a file": (f"PUT {content} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
                              "Connection: close\r\n\r\n".encode(), 405),
        "a method made up": (b"BREW /api/services HTTP/1.1\r\nHost: localhost\r\n"
                             b"Connection: close\r\n\r\n", 405),
    }  # fmt: skip
    for why, (request, status) in cases.items():
        got, headers, body = raw(stack, request)
        assert got == status, (why, got, body[:200])
        assert headers.get("content-type") == "application/json", why
        assert json.loads(body)["status"] == status, why


def test_the_proxy_answers_only_its_own_host_names(stack: Stack) -> None:
    """A page on another site that rebinds its name to 127.0.0.1 reaches the proxy with
    its own name as Host: it gets 421, not the API."""
    for host in ("localhost", "127.0.0.1", f"localhost:{stack.proxy.rsplit(':', 1)[1]}"):
        assert httpx.get(f"{stack.proxy}/api/services", headers={"Host": host}).status_code == 200
    for host in ("attacker.example", "attacker.example:80", "10.1.2.3"):
        rebound = httpx.get(f"{stack.proxy}/api/services", headers={"Host": host})
        assert rebound.status_code == 421 and "services" not in rebound.json(), host
        assert httpx.post(f"{stack.proxy}/api/services/upper/jobs", headers={"Host": host},
                          files={"input": ("a.fa", FASTA.encode())}).status_code == 421  # fmt: skip


def test_one_address_with_thousands_of_slow_uploads_does_not_take_the_proxy(
    stack: Stack,
) -> None:
    """2,000 uploads from one address that send their headers and then a byte now and
    then: another client's requests still succeed within a second."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 10000), hard))
    host, port = stack.proxy.removeprefix("http://").split(":")
    head = (b"POST /api/files HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")  # fmt: skip
    slow: list[socket.socket] = []
    try:
        for _ in range(2000):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((host, int(port)))
            slow.append(sock)
        time.sleep(1)
        for sock in slow:
            with contextlib.suppress(OSError):
                sock.send(head)
        times = []
        for _ in range(10):
            began = time.monotonic()
            listed = httpx.get(f"{stack.proxy}/api/services", timeout=5)
            uploaded = httpx.post(f"{stack.proxy}/api/files", timeout=5,
                                  files={"file": ("s.fa", b">s\nMKV\n", "application/fasta")})  # fmt: skip
            times.append(time.monotonic() - began)
            assert listed.status_code == 200 and uploaded.status_code == 201
            for sock in slow[:50]:  # the slow ones go on sending, a byte at a time
                with contextlib.suppress(OSError):
                    sock.send(b"x")
        refused = 0
        for sock in slow:
            with contextlib.suppress(OSError):
                refused += sock.recv(64).startswith(b"HTTP/1.1 429")
    finally:
        for sock in slow:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert max(times) < 1.0, times
    assert refused >= 2000 - stack.settings.proxy_client_connections - 10, refused


def test_one_address_sending_too_fast_gets_429_with_retry_after(stack: Stack) -> None:
    limited = 0
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3")) as client:
        for _ in range(stack.settings.proxy_client_rate * 10 + 300):
            response = client.get(f"{stack.proxy}/api/version")
            if response.status_code == 429:
                limited += 1
                assert response.headers["retry-after"] == "1"
                assert response.json()["status"] == 429
    assert limited >= 100, limited
    assert httpx.get(f"{stack.proxy}/api/version").status_code == 200  # others are not slowed


def test_cross_site_writes_are_refused_and_cors_is_explicit(stack: Stack) -> None:
    """A page of another site cannot make a visitor's browser submit or cancel jobs; a
    page of this site, a site on the allow-list, and clients that are not browsers can."""
    files = {"input": ("a.fa", FASTA.encode(), "application/fasta")}
    url = f"{stack.proxy}/api/services/upper/jobs"
    refused = {
        "another origin": {"Origin": "http://attacker.example"},
        "a sandboxed page": {"Origin": "null"},
        "another port of localhost": {"Origin": "http://127.0.0.1:9"},
        "a cross-site form without Origin": {"Sec-Fetch-Site": "cross-site"},
    }
    for why, headers in refused.items():
        response = httpx.post(url, files=files, headers=headers)
        assert response.status_code == 403 and response.json()["status"] == 403, why
        assert "access-control-allow-origin" not in response.headers, why
    job_id = submit(stack, "upper")
    cancel = httpx.delete(f"{stack.proxy}/api/jobs/{job_id}",
                          headers={"Origin": "http://attacker.example"})  # fmt: skip
    assert cancel.status_code == 403
    allowed = {
        "no browser at all": {},
        "this site's own page": {"Origin": stack.proxy, "Sec-Fetch-Site": "same-origin"},
        "a site on the allow-list": {"Origin": EMBEDDER, "Sec-Fetch-Site": "cross-site"},
    }
    for why, headers in allowed.items():
        assert httpx.post(url, files=files, headers=headers).status_code == 202, why
    # CORS: only for the allow-list, and reads of the API stay open to plain clients
    plain = httpx.get(f"{stack.proxy}/api/services", headers={"Origin": "http://attacker.example"})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
    listed = httpx.get(f"{stack.proxy}/api/services", headers={"Origin": EMBEDDER})
    assert listed.headers["access-control-allow-origin"] == EMBEDDER
    preflight = httpx.options(url, headers={"Origin": EMBEDDER,
                                            "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert (
        preflight.status_code == 200 and "POST" in preflight.headers["access-control-allow-methods"]
    )
    stranger = httpx.options(url, headers={"Origin": "http://attacker.example",
                                           "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert "access-control-allow-origin" not in stranger.headers


def test_a_job_cancelled_before_it_started_has_no_start_time(stack: Stack) -> None:
    sleepers = [submit(stack, "planter", script="sleep 60") for _ in range(4)]  # every slot
    try:
        deadline = time.monotonic() + 30
        while any(httpx.get(f"{stack.proxy}/api/jobs/{j}").json()["status"] != "RUNNING"
                  for j in sleepers):  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.1)
        waiting = submit(stack, "upper")
        time.sleep(0.5)
        assert httpx.get(f"{stack.proxy}/api/jobs/{waiting}").json()["status"] == "QUEUED"
        assert httpx.delete(f"{stack.proxy}/api/jobs/{waiting}").status_code == 204
        assert wait(stack, waiting) == "INTERRUPTED"
        job = httpx.get(f"{stack.proxy}/api/jobs/{waiting}").json()
        assert job["startTime"] is None and job["completionTime"] is not None
    finally:
        for job_id in sleepers:
            httpx.delete(f"{stack.proxy}/api/jobs/{job_id}")


def test_only_recorded_outputs_of_ended_jobs_are_served(stack: Stack) -> None:
    running = submit(stack, "planter", script="echo partial > /job/part.txt; sleep 60")
    try:
        deadline = time.monotonic() + 30
        while not (stack.settings.jobs_dir / running / "part.txt").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        early = httpx.get(f"{stack.proxy}{stack.settings.jobs_url}/{running}/part.txt")
        assert early.status_code == 404 and b"partial" not in early.content
    finally:
        httpx.delete(f"{stack.proxy}/api/jobs/{running}")
    done = submit(stack, "upper")
    assert wait(stack, done) == "COMPLETED"
    (stack.settings.jobs_dir / done / "extra.txt").write_text("not an output\n")
    base = f"{stack.proxy}{stack.settings.jobs_url}/{done}"
    assert httpx.get(f"{base}/result.txt").text == FASTA.upper()
    for path in ("extra.txt", "input.fa", "%2e%2e/%2e%2e/etc/passwd", "result.txt%2F..",
                 "%2e/result.txt"):  # fmt: skip
        refused = httpx.get(f"{base}/{path}")
        assert refused.status_code in (400, 404), path
        assert refused.headers["content-type"] == "application/json", path


def test_a_job_that_writes_more_than_its_cap_fails_and_its_files_go(stack: Stack) -> None:
    big = submit(stack, "planter", script="head -c 3000000 /dev/zero > /job/big.bin")
    assert wait(stack, big) == "FAILED"
    job = httpx.get(f"{stack.proxy}/api/jobs/{big}").json()
    assert "more than 2097152 bytes" in job["error"] and "job_max_output_bytes" in job["error"]
    assert not (stack.settings.jobs_dir / big).exists()
    assert httpx.get(f"{stack.proxy}/api/jobs/{big}/files").json()["files"] == []
    small = submit(stack, "planter", script="head -c 1000 /dev/zero > /job/small.bin")
    assert wait(stack, small) == "COMPLETED"


@pytest.fixture(scope="module")
def quota_stack(tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str,
                database_name: str) -> Iterator[Stack]:  # fmt: skip
    root = tmp_path_factory.mktemp("quotas")
    runners = {"docker": "backend: docker\noptions: {stop_grace: 1, slots: 1}\n"}
    with running_stack(root, mongodb_uri, f"{database_name}_quotas", services={"planter": PLANTER},
                       runners=runners, client_max_active_jobs=2, max_queued_jobs=4,
                       client_upload_bytes=1000) as stack:  # fmt: skip
        yield stack


def from_address(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_quotas_per_address_and_for_everyone(quota_stack: Stack) -> None:
    stack = quota_stack
    url = f"{stack.proxy}/api/services/planter/jobs"
    clients = {a: from_address(a) for a in ("127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7")}
    submitted = []
    try:
        for address in ("127.0.0.4", "127.0.0.5"):  # two each: one runs, the rest wait
            for _ in range(2):
                response = clients[address].post(url, data={"script": "sleep 60"})
                assert response.status_code == 202, response.text
                submitted.append(response.json()["id"])
                if len(submitted) == 1:  # it takes the one slot: the others wait
                    deadline = time.monotonic() + 30
                    while (
                        httpx.get(f"{stack.proxy}/api/jobs/{submitted[0]}").json()["status"]
                        != "RUNNING"
                    ):
                        assert time.monotonic() < deadline
                        time.sleep(0.1)
                time.sleep(0.3)  # the scheduler records the job as active from its wake-up
            third = clients[address].post(url, data={"script": "true"})
            assert third.status_code == 429 and third.json()["status"] == 429, third.text
            assert int(third.headers["retry-after"]) > 0
        last = clients["127.0.0.6"].post(url, data={"script": "sleep 60"})  # the 4th waiting
        assert last.status_code == 202
        submitted.append(last.json()["id"])
        time.sleep(0.3 + COUNT_AGE)  # each web worker counts everyone's jobs once a second
        full = clients["127.0.0.6"].post(url, data={"script": "true"})  # the queue is full
        assert full.status_code == 503 and "queue is full" in full.json()["message"]
        assert int(full.headers["retry-after"]) > 0
        # bytes uploaded per address and period
        uploads = stack.settings.uploads_dir
        for _ in range(2):
            sent = clients["127.0.0.7"].post(f"{stack.proxy}/api/files",
                                             files={"file": ("a.txt", b"x" * 600)})  # fmt: skip
            assert sent.status_code == 201
        before = set(uploads.iterdir())
        over = clients["127.0.0.7"].post(f"{stack.proxy}/api/files",
                                         files={"file": ("a.txt", b"x" * 600)})  # fmt: skip
        assert over.status_code == 429 and 0 < int(over.headers["retry-after"]) <= 3600
        assert set(uploads.iterdir()) == before
        assert (
            clients["127.0.0.6"]
            .post(f"{stack.proxy}/api/files", files={"file": ("a.txt", b"x" * 600)})
            .status_code
            == 201
        )
    finally:
        for job_id in submitted:
            httpx.delete(f"{stack.proxy}/api/jobs/{job_id}")
        for client in clients.values():
            client.close()


def test_a_nearly_full_disk_refuses_uploads_and_jobs_before_it_is_full(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, database_name: str
) -> None:
    root = tmp_path_factory.mktemp("full")
    with running_stack(root, mongodb_uri, f"{database_name}_full",
                       min_free_disk=2**62) as stack:  # fmt: skip # more than any disk has free
        for response in (
            httpx.post(f"{stack.proxy}/api/files", files={"file": ("s.fa", FASTA.encode())}),
            httpx.post(f"{stack.proxy}/api/services/upper/jobs",
                       files={"input": ("s.fa", FASTA.encode(), "application/fasta")}),
        ):  # fmt: skip
            assert response.status_code == 507, response.text
            assert response.json()["status"] == 507 and int(response.headers["retry-after"]) > 0
        assert list(stack.settings.uploads_dir.iterdir()) == []
        assert httpx.get(f"{stack.proxy}/api/services").status_code == 200  # reading goes on
