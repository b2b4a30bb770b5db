"""The GA4GH Task Execution API through the real proxy, web process, scheduler and Docker
engine, driven by py-tes (the client workflow scripts use) and by hand; and the GA4GH
compliance suite (openapi-test-runner) against a second, anonymous appliance."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tes

from appliance import cli, webhooks
from appliance.tes.auth import Clients, load_clients
from appliance.tes.task import image_allowed
from tests.conftest import ROOT
from tests.helpers import TEST_IMAGE, build_test_image
from tests.test_webhooks import SECRET, receiver
from tests.web.stack import Stack, running_stack

ALICE, BOB = "alice-token-0123456789", "bob-token-9876543210"
FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


class Files(http.server.ThreadingHTTPServer):
    """A loopback web server: GET serves ``files``; PUT stores the body in ``received``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.received: dict[str, bytes] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/slow/"):  # a slow server: 8 s before it answers
                    time.sleep(8)
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"slowly\n")
                    return
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/input.txt")
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                server.received[self.path] = self.rfile.read(length)
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def tag_alpine(tmp_path: Path) -> None:
    """The compliance suite and engines' examples name ``alpine``: here it is busybox."""
    build_test_image(tmp_path)
    subprocess.run(["docker", "tag", TEST_IMAGE, "alpine:latest"], check=True)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shared")
    root.chmod(0o755)
    return root


@pytest.fixture(scope="module")
def files() -> Iterator[Files]:
    server = Files()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, database_name: str,
          shared: Path) -> Iterator[Stack]:  # fmt: skip
    root = tmp_path_factory.mktemp("tes")
    tag_alpine(root)
    clients = root / "clients"
    clients.write_text("".join(f"{name} {hashlib.sha256(token.encode()).hexdigest()}\n"
                               for name, token in (("alice", ALICE), ("bob", BOB))))  # fmt: skip
    runners = {"docker": "backend: docker\noptions: {stop_grace: 1}\n"}
    secret = root / "webhook.secret"
    secret.write_bytes(SECRET)
    # A client's unfinished tasks are capped as an address's jobs (100 by default): the
    # module's tests together leave more than that unfinished at times.
    with running_stack(root, mongodb_uri, database_name, runners=runners, tes_enabled=True,
                       tes_tokens_file=str(clients), tes_images=[TEST_IMAGE, "alpine:"],
                       tes_file_roots=[str(shared)], tes_fetch_private=True,
                       client_max_active_jobs=1000, webhook_private=True,
                       webhook_secret_file=str(secret)) as stack:  # fmt: skip
        yield stack


def client(stack: Stack, token: str = ALICE) -> tes.HTTPClient:
    return tes.HTTPClient(stack.proxy, timeout=30, token=token)


def wait(cli: tes.HTTPClient, task_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while (task := cli.get_task(task_id, view="FULL")).state not in FINAL:
        assert time.monotonic() < deadline, task.state
        time.sleep(0.1)
    return task


def test_service_info(stack: Stack) -> None:
    info = client(stack).get_service_info()
    assert info.type["artifact"] == "tes" and info.type["version"] == "1.1.0"
    assert "https://" in info.storage and any(s.startswith("file://") for s in info.storage)


def test_a_workflow_task_end_to_end(stack: Stack, files: Files, shared: Path) -> None:
    """Inline, file and http inputs; two executors sharing a volume; stdout redirected;
    outputs to a file and by http PUT; FULL logs."""
    (shared / "local.txt").write_text("from a file\n")
    files.files["/input.txt"] = b"from the web\n"
    cli = client(stack)
    task = tes.Task(
        name="pipeline-1",
        inputs=[tes.Input(path="/data/inline.txt", content="inline words\n"),
                tes.Input(path="/data/local.txt", url=f"file://{shared}/local.txt"),
                tes.Input(path="/data/web.txt", url=f"{files.url}/redirect")],
        outputs=[tes.Output(path="/scratch/all.txt", url=f"file://{shared}/out/all.txt"),
                 tes.Output(path="/scratch/count.txt", url=f"{files.url}/upload/count.txt")],
        executors=[
            tes.Executor(image=TEST_IMAGE, command=["sh", "-c", "cat /data/*.txt > /scratch/all.txt"]),
            tes.Executor(image=TEST_IMAGE, command=["wc", "-l", "/scratch/all.txt"],
                         stdout="/scratch/count.txt", workdir="/scratch"),
        ],
        volumes=["/scratch"],
        tags={"pipeline": "one"},
    )  # fmt: skip
    task_id = cli.create_task(task)
    done = wait(cli, task_id)
    assert done.state == "COMPLETE", done.logs
    text = (shared / "out" / "all.txt").read_text()
    assert sorted(text.splitlines()) == ["from a file", "from the web", "inline words"]
    assert files.received["/upload/count.txt"].decode().split()[0] == "3"
    [log] = done.logs
    assert [e.exit_code for e in log.logs] == [0, 0]
    assert {o.url: o.size_bytes for o in log.outputs} == {
        f"file://{shared}/out/all.txt": len(text),
        f"{files.url}/upload/count.txt": len(files.received["/upload/count.txt"])}  # fmt: skip
    raw = httpx.get(f"{stack.proxy}/ga4gh/tes/v1/tasks/{task_id}?view=FULL",
                    headers={"Authorization": f"Bearer {ALICE}"}).json()  # fmt: skip
    assert {o["size_bytes"] for o in raw["logs"][0]["outputs"]} == {str(len(text)), "19"}
    assert log.start_time and log.end_time
    basic = cli.get_task(task_id, view="BASIC")
    assert basic.inputs[0].content is None and done.inputs[0].content == "inline words\n"
    # Its files are listed with URLs the proxy serves, like any job's results.
    listed = httpx.get(f"{stack.proxy}/api/jobs/{task_id}/files").json()["files"]
    count = [f for f in listed if f["path"] == "fs/scratch/count.txt"]
    assert count and httpx.get(stack.proxy + count[0]["@content"]).text.startswith("3")


def test_a_task_that_names_a_webhook_is_posted_when_it_ends(stack: Stack) -> None:
    cli = client(stack)
    with receiver() as hook:
        task_id = cli.create_task(tes.Task(
            executors=[tes.Executor(image=TEST_IMAGE, command=["sh", "-c", "exit 3"])],
            tags={"appliance-webhook": hook.url}))  # fmt: skip
        assert wait(cli, task_id).state == "EXECUTOR_ERROR"
        deadline = time.monotonic() + 30
        while not hook.posts:
            assert time.monotonic() < deadline, "no post within 30 s of the end"
            time.sleep(0.1)
    headers, body = hook.posts[0]
    webhooks.verify(SECRET, headers["appliance-signature"], body, now=time.time())
    sent = json.loads(body)
    assert sent["id"] == task_id and sent["url"] == f"/ga4gh/tes/v1/tasks/{task_id}"
    assert sent["status"] == "FAILED"  # the job's state; TES says EXECUTOR_ERROR
    refused = post(stack, {"executors": [{"image": TEST_IMAGE, "command": ["true"]}],
                           "tags": {"appliance-webhook": "ftp://example.org/x"}})  # fmt: skip
    assert refused.status_code == 400 and "appliance-webhook" in refused.json()["message"]


def test_a_failing_executor_stops_the_rest_unless_ignored(stack: Stack) -> None:
    cli = client(stack)
    ids = {}
    for ignore in (False, True):
        ids[ignore] = cli.create_task(tes.Task(executors=[
            tes.Executor(image=TEST_IMAGE, command=["sh", "-c", "exit 3"], ignore_error=ignore),
            tes.Executor(image=TEST_IMAGE, command=["echo", "after"])]))  # fmt: skip
    stopped, went_on = wait(cli, ids[False]), wait(cli, ids[True])
    assert stopped.state == "EXECUTOR_ERROR" and [e.exit_code for e in stopped.logs[0].logs] == [3]
    assert went_on.state == "COMPLETE" and [e.exit_code for e in went_on.logs[0].logs] == [3, 0]
    assert went_on.logs[0].logs[1].stdout == "after\n"


def test_cancel_a_running_task_within_a_second(stack: Stack) -> None:
    cli = client(stack)
    task_id = cli.create_task(
        tes.Task(executors=[tes.Executor(image=TEST_IMAGE, command=["sleep", "300"])])
    )
    deadline = time.monotonic() + 60
    while cli.get_task(task_id).state != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    began = time.monotonic()
    cli.cancel_task(task_id)
    while (state := cli.get_task(task_id, view="MINIMAL").state) not in FINAL:
        time.sleep(0.02)
    took = time.monotonic() - began
    assert state == "CANCELED"
    assert took < 1.0, took


def test_a_cancel_shows_at_once_even_before_a_scheduler_acts(stack: Stack) -> None:
    cli = client(stack)
    task_id = cli.create_task(
        tes.Task(executors=[tes.Executor(image=TEST_IMAGE, command=["sleep", "300"])])
    )
    cli.cancel_task(task_id)
    assert cli.get_task(task_id).state in {"CANCELING", "CANCELED"}
    assert wait(cli, task_id, timeout=30).state == "CANCELED"


def test_a_hundred_tasks_at_once(stack: Stack) -> None:
    cli = client(stack)
    ids = [cli.create_task(tes.Task(name=f"many-{i}", executors=[
        tes.Executor(image=TEST_IMAGE, command=["echo", str(i)])])) for i in range(100)]  # fmt: skip
    states = [wait(cli, task_id, timeout=600).state for task_id in ids]
    assert states == ["COMPLETE"] * 100

    def page(token: str | None) -> Any:
        params = {"view": "MINIMAL", "name_prefix": "many-", "page_size": "30"}
        response = httpx.get(f"{stack.proxy}/ga4gh/tes/v1/tasks", headers=bearer(ALICE),
                             params={**params, **({"page_token": token} if token else {})})  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()

    listed = page(None)
    assert len(listed["tasks"]) == 30 and listed["next_page_token"]
    assert set(listed["tasks"][0]) == {"id", "state"}
    seen = {t["id"] for t in listed["tasks"]}
    pages = 1
    while token := listed.get("next_page_token"):
        listed = page(token)
        seen.update(t["id"] for t in listed["tasks"])
        pages += 1
    assert pages == 4 and seen == set(ids)
    assert len(cli.list_tasks(view="BASIC", page_size=5).tasks) == 5  # as py-tes asks
    assert seen == set(ids)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def post(stack: Stack, body: Any, token: str | None = ALICE) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{stack.proxy}/ga4gh/tes/v1/tasks", json=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"executors": [{"image": "evil/miner:1", "command": ["x"]}]}, 403, "executors[0].image"),
        ({"executors": [{"image": TEST_IMAGE, "command": ["x"]}],
          "inputs": [{"url": "file:///etc/passwd", "path": "/data/p"}]}, 400, "inputs[0].url"),
        ({"executors": [{"image": TEST_IMAGE, "command": ["x"]}],
          "inputs": [{"url": "s3://bucket/x", "path": "/data/x"}]}, 400, "s3://"),
        ({"executors": [{"image": TEST_IMAGE, "command": ["x"]}],
          "outputs": [{"url": "file:///tmp/../etc/x", "path": "/data/x"}]}, 400, "outputs[0].url"),
        ({"executors": [{"image": TEST_IMAGE, "command": ["x"], "workdir": "/etc"}]}, 400,
         "executors[0].workdir"),
        ({"executors": [{"image": TEST_IMAGE, "command": []}]}, 400, "executors[0].command"),
        ({"executors": []}, 400, "executors"),
        ({"executors": [{"image": TEST_IMAGE, "command": ["x"]}],
          "resources": {"backend_parameters": {"VmSize": "big"}, "backend_parameters_strict": True}},
         400, "resources.backend_parameters"),
        ([1, 2], 400, "JSON object"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(stack: Stack, body: Any, status: int, words: str) -> None:
    answer = post(stack, body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["message"]


def raw_post(stack: Stack, body: bytes) -> httpx.Response:
    return httpx.post(f"{stack.proxy}/ga4gh/tes/v1/tasks", content=body, timeout=60,
                      headers={"Authorization": f"Bearer {ALICE}",
                               "Content-Type": "application/json"})  # fmt: skip


EXECUTOR = json.dumps({"image": TEST_IMAGE, "command": ["true"]})


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [(b"[" * 100_000 + b"]" * 100_000, 400, "nested more than"),
     (b'{"executors": [' + EXECUTOR.encode() + b'], "tags": {"x": NaN}}', 400, "NaN"),
     (b'{"executors": [' + EXECUTOR.encode() + b'], "tags": {"x": 1e400}}', 400, "too large"),
     (b'{"executors": [' + EXECUTOR.encode() + b'], "tags": {"$where": "1"}}', 400, "'$where'"),
     (b'{"executors": [' + EXECUTOR.encode() + b'], "tags": {"a.b": "1"}}', 400, "'a.b'"),
     (b'{"executors": [' + EXECUTOR.encode() + b'], "inputs": [{"path": "/data/x", '
      b'"url": "http://[::1/x"}]}', 400, "inputs[0].url"),
     (b'{"executors": [' + EXECUTOR.encode() + b'], "inputs": [{"path": "/data/x", '
      b'"url": "http://example.org:99999/x"}]}', 400, "inputs[0].url"),
     (b'{"executors": [' + EXECUTOR.encode() + b'], "inputs": [{"path": "/data/x", '
      b'"url": "http://example.org/a\\u0000b"}]}', 400, "control characters"),
     (b'{"executors": [' + b",".join([EXECUTOR.encode()] * 21) + b"]}", 400, "at most 20"),
     (b'{"executors": [' + EXECUTOR.encode() + b'], "description": "' + b"x" * (5 * 1024**2)
      + b'"}', 413, "larger than")],
    ids=["deep", "NaN", "1e400", "$-key", "dotted key", "bad IPv6 host", "port 99999",
         "NUL in a URL", "too many executors", "5 MB"],
)  # fmt: skip
def test_hostile_task_bodies_are_refused_and_nothing_breaks(
    stack: Stack, body: bytes, status: int, words: str
) -> None:
    """Each used to answer 500, hang the staging for ever, or make the store think the
    database was gone; now a 4xx naming what is wrong, and the service goes on."""
    answer = raw_post(stack, body)
    assert answer.status_code == status, answer.text[:300]
    assert words in answer.json()["message"], answer.json()
    fine = post(stack, {"executors": [{"image": TEST_IMAGE, "command": ["true"]}]})
    assert fine.status_code == 200  # the next task is taken as ever


def test_staging_failures_are_system_errors_that_say_why(
    stack: Stack, files: Files, shared: Path
) -> None:
    (shared / "passwd-link").symlink_to("/etc/passwd")
    cli = client(stack)
    inputs = {
        "404": tes.Input(path="/data/x", url=f"{files.url}/missing"),
        "symlink out of the roots": tes.Input(path="/data/x", url=f"file://{shared}/passwd-link"),
    }
    ids = {why: cli.create_task(tes.Task(inputs=[given], executors=[
        tes.Executor(image=TEST_IMAGE, command=["cat", "/data/x"])])) for why, given in inputs.items()}  # fmt: skip
    for why, task_id in ids.items():
        done = wait(cli, task_id)
        assert done.state == "SYSTEM_ERROR", why
        [reason] = done.logs[0].system_logs
        assert ("404" if why == "404" else "folders tasks may use") in reason, reason
        assert done.logs[0].logs == [], why  # no executor ran


def test_outputs_never_follow_a_link_an_executor_made(stack: Stack, shared: Path) -> None:
    """An executor's symlink in the work directory points at the scheduler's machine's
    files once seen from outside the container: no output may be read through one."""
    cli = client(stack)
    plant = "ln -s /etc /data/sub; ln -s /etc/passwd /data/pw; mkdir /data/d; ln -s /etc /data/d/e"
    outputs = {
        "through a linked folder": tes.Output(path="/data/sub/passwd", url=f"file://{shared}/s1"),
        "a linked file": tes.Output(path="/data/pw", url=f"file://{shared}/s2"),
        "a wildcard": tes.Output(path="/data/*", path_prefix="/data", url=f"file://{shared}/s3"),
        "a folder holding a link": tes.Output(path="/data/d", type="DIRECTORY",
                                              url=f"file://{shared}/s4"),
    }  # fmt: skip
    ids = {why: cli.create_task(tes.Task(outputs=[out], volumes=["/data"], executors=[
        tes.Executor(image=TEST_IMAGE, command=["sh", "-c", plant])])) for why, out in outputs.items()}  # fmt: skip
    for task_id in ids.values():
        wait(cli, task_id)
    for path in shared.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert "root:" not in path.read_text(errors="replace"), path
    assert cli.get_task(ids["through a linked folder"], view="FULL").state == "SYSTEM_ERROR"
    assert cli.get_task(ids["a linked file"], view="FULL").state == "SYSTEM_ERROR"
    for why in ("a wildcard", "a folder holding a link"):  # nothing of the task's to send
        done = cli.get_task(ids[why], view="FULL")
        assert done.state == "COMPLETE" and not done.logs[0].outputs, why


@contextlib.contextmanager
def swapped(name: Path, *targets: Path) -> Iterator[None]:
    """``name`` swapped between symlinks to ``targets`` as fast as a thread can, as a
    local user who can write in the shared folder would race the scheduler."""
    stop = threading.Event()
    spare = name.with_name(name.name + ".new")
    name.symlink_to(targets[0])

    def swap() -> None:
        while not stop.is_set():
            for target in targets:
                spare.symlink_to(target)
                os.replace(spare, name)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        name.unlink()


def test_a_name_swapped_while_staging_never_reaches_the_volumes(stack: Stack, shared: Path) -> None:
    """The security review's attack on file:// staging: while tasks copy files in (a
    FILE and a DIRECTORY) and out, a folder of the shared root keeps turning into a
    symlink to the uploads volume. No output lands there and no input is read from it
    (each walk goes by descriptor; a link out of the root is refused)."""
    uploads = stack.settings.uploads_dir
    victim = uploads / "victim"
    victim.write_text("another user's upload\n")
    before = sorted(p.name for p in uploads.iterdir())
    decoy = shared / "decoy"
    decoy.mkdir()
    (decoy / "victim").write_text("decoy\n")
    cli = client(stack)
    race = f"file://{shared}/race"
    tasks = [
        tes.Task(outputs=[tes.Output(path="/data/out", url=f"{race}/victim")], executors=[
            tes.Executor(image=TEST_IMAGE, command=["sh", "-c", "echo overwritten > /data/out"])]),
        tes.Task(inputs=[tes.Input(path="/data/in", url=f"{race}/victim")], executors=[
            tes.Executor(image=TEST_IMAGE, command=["cat", "/data/in"])]),
        tes.Task(inputs=[tes.Input(path="/data/d", url=race, type="DIRECTORY")], executors=[
            tes.Executor(image=TEST_IMAGE, command=["sh", "-c", "cat /data/d/*"])]),
    ]  # fmt: skip
    with swapped(shared / "race", decoy, uploads):
        ids = [cli.create_task(task) for _ in range(8) for task in tasks]
        done = [wait(cli, task_id) for task_id in ids]
    assert victim.read_text() == "another user's upload\n"
    assert sorted(p.name for p in uploads.iterdir()) == before
    for task in done:
        stdout = "".join(e.stdout or "" for e in task.logs[0].logs)
        assert "another user" not in stdout, task.id
    states = [t.state for t in done]
    assert "COMPLETE" in states and "SYSTEM_ERROR" in states, states  # the race was run


def test_slow_staging_does_not_hold_up_other_jobs(stack: Stack, files: Files) -> None:
    """Eight tasks whose inputs come from a slow server used to hold the scheduler's eight
    start slots for as long as their fetches took: every other job waited. Staging now
    lends its slot, within bounds of its own (four at a time per client)."""
    cli = client(stack)
    slow = [cli.create_task(tes.Task(inputs=[tes.Input(path="/data/in", url=f"{files.url}/slow/{i}")],
                                     executors=[tes.Executor(image=TEST_IMAGE, command=["cat", "/data/in"])]))
            for i in range(8)]  # fmt: skip
    time.sleep(1)  # claimed, and staging
    began = time.monotonic()
    other = post(stack, {"executors": [{"image": TEST_IMAGE, "command": ["true"]}]}, token=BOB)
    done = wait(client(stack, BOB), other.json()["id"], timeout=60)
    assert done.state == "COMPLETE"
    assert time.monotonic() - began < 6, "it waited for the slow stagings"
    ended = [wait(cli, task_id, timeout=120) for task_id in slow]
    assert [t.state for t in ended] == ["COMPLETE"] * 8
    assert all(t.logs[0].logs[0].stdout == "slowly\n" for t in ended)


def test_a_task_is_no_job_of_the_slivka_routes_or_pages(stack: Stack) -> None:
    """A task is its client's: without its token it cannot be read or cancelled through
    the job routes or the pages; its files' list (which its logs point to) stays there."""
    task_id = post(
        stack, {"executors": [{"image": TEST_IMAGE, "command": ["sleep", "30"]}]}
    ).json()["id"]
    for answer in (httpx.get(f"{stack.proxy}/api/jobs/{task_id}"),
                   httpx.delete(f"{stack.proxy}/api/jobs/{task_id}"),
                   httpx.get(f"{stack.proxy}/jobs/{task_id}"),
                   httpx.post(f"{stack.proxy}/jobs/{task_id}/cancel")):  # fmt: skip
        assert answer.status_code == 404, (answer.request.method, answer.request.url)
    assert httpx.get(f"{stack.proxy}/api/jobs/{task_id}/files").status_code == 200
    state = client(stack).get_task(task_id).state
    assert state not in ("CANCELED", "CANCELING"), state
    httpx.post(f"{stack.proxy}/ga4gh/tes/v1/tasks/{task_id}:cancel",
               headers={"Authorization": f"Bearer {ALICE}"})  # fmt: skip


def test_a_clients_unfinished_tasks_are_capped_as_an_addresss_jobs(
    tmp_path: Path, mongodb_uri: str, database_name: str
) -> None:
    clients = tmp_path / "clients"
    clients.write_text(f"carol {hashlib.sha256(b'carol-token-0123456789').hexdigest()}\n")
    with running_stack(tmp_path, mongodb_uri, database_name, tes_enabled=True,
                       tes_tokens_file=str(clients), tes_images=[TEST_IMAGE],
                       client_max_active_jobs=3) as small:  # fmt: skip
        body = {"executors": [{"image": TEST_IMAGE, "command": ["sleep", "30"]}]}
        answers = [post(small, body, token="carol-token-0123456789") for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        assert "unfinished tasks" in answers[3].json()["message"]
        assert answers[3].headers.get("retry-after")
        for answer in answers[:3]:
            httpx.post(f"{small.proxy}/ga4gh/tes/v1/tasks/{answer.json()['id']}:cancel",
                       headers={"Authorization": "Bearer carol-token-0123456789"})  # fmt: skip


def test_tokens_and_ownership(stack: Stack) -> None:
    body = {"executors": [{"image": TEST_IMAGE, "command": ["true"]}]}
    assert post(stack, body, token=None).status_code == 401
    assert post(stack, body, token="not-a-token").status_code == 401
    task_id = post(stack, body).json()["id"]
    theirs = httpx.get(f"{stack.proxy}/ga4gh/tes/v1/tasks/{task_id}",
                       headers={"Authorization": f"Bearer {BOB}"})  # fmt: skip
    assert theirs.status_code == 404  # another client's task is not even said to exist
    assert task_id not in {t.id for t in client(stack, BOB).list_tasks().tasks}
    assert task_id in {t.id for t in client(stack).list_tasks().tasks}
    assert httpx.post(f"{stack.proxy}/ga4gh/tes/v1/tasks/{task_id}:cancel",
                      headers={"Authorization": f"Bearer {BOB}"}).status_code == 404  # fmt: skip


def test_executors_run_locked_down_with_capped_resources(stack: Stack) -> None:
    cli = client(stack)
    task_id = cli.create_task(tes.Task(
        executors=[tes.Executor(image=TEST_IMAGE, command=["sh", "-c", "id -u; ls /sys/class/net"],
                                stdout="/out/id.txt")],
        resources=tes.Resources(cpu_cores=64, ram_gb=1000)))  # fmt: skip
    done = wait(cli, task_id)
    assert done.state == "COMPLETE"
    assert done.resources.cpu_cores == 4 and done.resources.ram_gb == 8  # the site's caps
    shown = (stack.settings.jobs_dir / task_id / "fs" / "out" / "id.txt").read_text().split()
    assert shown[0] == "1000" and shown[1:] == ["lo"]  # non-root, no network


def test_each_executor_runs_once_across_a_kill_9_of_the_scheduler(stack: Stack) -> None:
    cli = client(stack)
    ids = [cli.create_task(tes.Task(executors=[
        tes.Executor(image=TEST_IMAGE, command=["sh", "-c", "echo one >> /data/runs; sleep 2"]),
        tes.Executor(image=TEST_IMAGE, command=["sh", "-c", "echo two >> /data/runs"])],
        volumes=["/data"])) for _ in range(4)]  # fmt: skip
    deadline = time.monotonic() + 60
    while sum(cli.get_task(i).state == "RUNNING" for i in ids) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stack.processes["scheduler"].send_signal(signal.SIGKILL)
    stack.processes["scheduler"].wait()
    stack.start("scheduler")
    states = [wait(cli, task_id, timeout=180).state for task_id in ids]
    assert states == ["COMPLETE"] * 4
    for task_id in ids:
        runs = (stack.settings.jobs_dir / task_id / "fs" / "data" / "runs").read_text()
        assert runs == "one\ntwo\n", task_id


def compliance_suite() -> Path:
    for candidate in (os.environ.get("APPLIANCE_TES_COMPLIANCE"), ROOT.parent / "shared" / "tools" /
                      "tes-compliance", Path("/work/shared/tools/tes-compliance")):  # fmt: skip
        if candidate and (Path(candidate) / "run").is_file():
            return Path(candidate)
    pytest.fail("the GA4GH TES compliance suite (tools/tes-compliance) is not on this machine: "
                "set APPLIANCE_TES_COMPLIANCE to its folder")  # fmt: skip


def test_the_ga4gh_compliance_suite_passes(
    tmp_path: Path, mongodb_uri: str, database_name: str
) -> None:
    suite = compliance_suite()
    tag_alpine(tmp_path)
    subprocess.run(["docker", "tag", TEST_IMAGE, "ubuntu:20.04"], check=True)
    runners = {"docker": "backend: docker\noptions: {stop_grace: 1}\n"}
    with running_stack(tmp_path, mongodb_uri, database_name + "_compliance", runners=runners,
                       tes_enabled=True, tes_anonymous=True, tes_images=["alpine:", "ubuntu:"],
                       tes_staged_schemes=["s3"], tes_create_wait="10s") as stack:  # fmt: skip
        result = subprocess.run([str(suite / "run"), f"{stack.proxy}/ga4gh/tes/", "1.1.0"],
                                capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "test files pass" in result.stdout
    shutil.rmtree(tmp_path / "nginx", ignore_errors=True)


def test_image_rules_read_names_as_the_engine_does() -> None:
    rules = ("alpine:", "registry.example:5000/lab/", "biocontainers/mafft:7.505")
    assert image_allowed("alpine", rules) and image_allowed("alpine:3.20", rules)
    assert image_allowed("registry.example:5000/lab/tool:1", rules)
    assert image_allowed("biocontainers/mafft:7.505", rules)
    assert not image_allowed("alpine2", rules) and not image_allowed("evil/alpine:3", rules)
    assert not image_allowed("biocontainers/mafft", rules)  # that is :latest, not 7.505
    assert not image_allowed("registry.example:5000/lab", rules)
    assert image_allowed("ubuntu:latest", ("ubuntu",)) and not image_allowed(
        "ubuntu:20.04", ("ubuntu",)
    )
    # after "alpine:" comes a tag, never a registry called alpine on some port
    assert not image_allowed("alpine:5000/evil/miner:1", rules)
    assert not image_allowed("alpine:5000/evil", rules)


def test_tes_token_prints_a_token_and_the_line_that_lets_it_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["tes-token", "carol"]) == 0
    out, err = capsys.readouterr()
    token = err.rsplit(": ", 1)[1].strip()
    (tmp_path / "clients").write_text(out)
    clients = Clients(load_clients(tmp_path / "clients"), anonymous=False)
    assert clients.who(f"Bearer {token}") == "carol" and len(token) >= 40
    assert cli.main(["tes-token", "two words"]) == 2
