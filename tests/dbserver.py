"""A MongoDB-protocol server of a test's own, to stop and start again (outage tests)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from pymongo import MongoClient


class Server:
    """A MongoDB-protocol server of this test's own, to stop and start again."""

    def __init__(self, data: Path) -> None:
        self.data = data
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        ferretdb = os.environ.get("APPLIANCE_TEST_FERRETDB")
        if ferretdb:
            return [ferretdb, "-listen-addr", f"127.0.0.1:{self.port}", "-data-dir", str(self.data)]
        mongod = shutil.which("mongod")
        if mongod:
            return [
                mongod,
                "--dbpath",
                str(self.data),
                "--port",
                str(self.port),
                "--bind_ip",
                "127.0.0.1",
            ]
        pytest.fail("neither APPLIANCE_TEST_FERRETDB nor mongod: run the tests with scripts/test")

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        # its log beside its data, kept across restarts, for a failed test to be read
        with (self.data.parent / f"{self.data.name}.log").open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                MongoClient(self.uri, serverSelectionTimeoutMS=200).admin.command("ping")
                return
            except Exception:
                continue
        raise AssertionError("the server did not start")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(10)
