"""The docker runner's own client of the engine's API (appliance.runners.docker.engine),
against the real engine: answers, errors as the backend tells them apart, output
streams apart, and a kept connection that went away replaced without the caller seeing it.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.runners.docker import engine as api
from appliance.runners.docker import engineapi
from appliance.runners.docker.engine import Engine
from tests.helpers import TEST_IMAGE, build_test_image


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    build_test_image(tmp_path)
    engine = Engine("unix:///var/run/docker.sock", timeout=30)
    yield engine
    engine.close()


@pytest.fixture
def label() -> Iterator[str]:
    label = f"appliance.instance=engine-test-{uuid.uuid4().hex[:8]}"
    yield label
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"],
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def options(name: str, label: str, script: str) -> dict[str, object]:
    key, _, value = label.partition("=")
    return {"name": name, "entrypoint": ["/bin/sh", "-c"], "command": [script],
            "labels": {key: value}, "network_mode": "none", "cap_drop": ["ALL"],
            "read_only": True, "init": True, "mem_limit": "32m", "memswap_limit": "32m",
            "pids_limit": 16, "environment": {"GREETING": "hello there"}}  # fmt: skip


def test_a_container_is_made_run_listed_read_and_removed(engine: Engine, label: str) -> None:
    name = label.rpartition("=")[2] + "-one"
    container = engineapi.create(engine, TEST_IMAGE, options(
        name, label, 'echo "$GREETING"; echo oops >&2; exit 3'))  # fmt: skip
    assert container.status == "created" and container.name == name
    container.start()
    subprocess.run(["docker", "wait", container.id], check=True, capture_output=True)
    [listed] = engineapi.listed(engine, label)
    assert listed.name == name and listed.status == "exited"
    assert listed.labels == {"appliance.instance": label.partition("=")[2]}
    assert engineapi.exit_of(listed) == (3, False, "")  # not 0: inspected for why
    host = engine.inspect(name)["HostConfig"]
    assert host["Memory"] == 32 * 1024**2 and host["PidsLimit"] == 16
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    chunks = list(engine.logs(container.id))
    assert b"".join(c for s, c in chunks if s == 1) == b"hello there\n"
    assert b"".join(c for s, c in chunks if s == 2) == b"oops\n"
    assert listed.output(stdout=1, stderr=0) == b"hello there\n"
    listed.remove()
    assert engineapi.listed(engine, label) == []
    with pytest.raises(api.NotFound):
        engine.inspect(name)


def test_the_engines_refusals_are_told_apart(engine: Engine, label: str) -> None:
    name = label.rpartition("=")[2] + "-two"
    with pytest.raises(api.ImageNotFound) as missing:
        engineapi.create(engine, "appliance-test/no-such-image:0", options(name, label, "true"))
    assert missing.value.status == 404 and "no-such-image" in missing.value.explanation
    engineapi.create(engine, TEST_IMAGE, options(name, label, "true"))
    with pytest.raises(api.Conflict) as twice:
        engineapi.create(engine, TEST_IMAGE, options(name, label, "true"))
    assert twice.value.status == 409 and name in twice.value.explanation
    with pytest.raises(api.NotFound) as gone:
        engine.remove(name + "-never-made")
    assert not isinstance(gone.value, api.ImageNotFound)
    with pytest.raises(api.EngineError) as bad:  # refused, with the engine's own words
        engine.request("POST", "/containers/create", {"name": "bad name!"},
                       {"Image": TEST_IMAGE, "Cmd": ["true"]})  # fmt: skip
    assert bad.value.status == 400 and "name" in bad.value.explanation.lower()
    assert not engine.has_image("appliance-test/no-such-image:0")
    assert engine.has_image(TEST_IMAGE)


def test_a_kept_connection_that_went_away_is_replaced(engine: Engine) -> None:
    before = engine.version()["ApiVersion"]
    connection = engine._connection()
    assert connection.sock is not None  # kept for the next request
    connection.sock.shutdown(socket.SHUT_RDWR)  # as when the engine restarts
    assert engine.version()["ApiVersion"] == before
    assert engine._connection() is not connection


def test_each_thread_has_its_own_connection(engine: Engine) -> None:
    answers: list[str] = []

    def ask() -> None:
        for _ in range(20):
            answers.append(str(engine.info()["ID"]))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 80 and len(set(answers)) == 1
    assert len(engine._connections) == 4  # one per thread, kept


def test_no_engine_is_unreachable_not_a_crash(tmp_path: Path) -> None:
    engine = Engine(f"unix://{tmp_path}/no.sock")
    with pytest.raises(api.Unreachable):
        engine.version()
    listener = socket.socket(socket.AF_UNIX)  # accepts, then hangs up without an answer
    listener.bind(str(tmp_path / "mute.sock"))
    listener.listen(1)

    def hang_up() -> None:
        connection, _ = listener.accept()
        connection.recv(1024)
        connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    with pytest.raises(api.Unreachable):
        Engine(f"unix://{tmp_path}/mute.sock", timeout=5).version()
    listener.close()
    with pytest.raises(ValueError, match="unix:// or tcp://"):
        Engine("ssh://somewhere")
