"""A real stack for end-to-end tests: nginx (configured by ``appliance proxy-config``) in
front of ``appliance web`` on hypercorn, ``appliance scheduler`` running jobs in Docker."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from appliance.settings import Settings
from tests.helpers import TEST_IMAGE, build_test_image, make_settings, settings_env

UPPER = f"""\
appliance-version: 1
name: Upper case
description: Turns sequences into upper case.
image: {TEST_IMAGE}
runner: docker
resources: {{memory: 64M, time-limit: 5m}}
parameters:
  input: {{name: Sequences, type: file, media-type: application/fasta}}
  tag: {{name: Tag, type: text, required: false}}
  delay: {{name: Delay, type: integer, default: 0, min: 0, max: 60}}
command: sh -c 'sleep "$0"; tr a-z A-Z < input.fa > result.txt'
args:
  delay: {{arg: "$(value)"}}
  input: {{arg: "$(value)", symlink: input.fa}}
outputs:
  result: {{path: result.txt, name: Result, media-type: text/plain}}
"""
FASTA = ">one\nmkvla\n>two\nmkv-a\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


@dataclass
class Stack:
    settings: Settings
    proxy: str  # http://127.0.0.1:PORT, the only public door
    web: str  # the web process itself, for checks that bytes do not come from it
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        """(Re)start ``scheduler`` or ``worker``."""
        command = {"scheduler": ["scheduler"], "worker": ["worker", "--slots", "4"]}[name]
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "appliance", *command], env=self.env
        )


@contextlib.contextmanager
def running_stack(
    root: Path,
    mongodb_uri: str,
    database_name: str,
    services: dict[str, str] | None = None,
    runners: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
    **changes: Any,
) -> Iterator[Stack]:
    """Everything started, and stopped again (each process must exit cleanly)."""
    build_test_image(root)
    web_port, proxy_port = free_port(), free_port()
    changes.setdefault("proxy_client_rate", 0)  # tests send hundreds a second from one address
    settings = make_settings(root, mongodb_uri, database_name, upload_max_bytes=64 * 1024,
                             web_bind=f"127.0.0.1:{web_port}", lease_seconds=10, **changes)  # fmt: skip
    (settings.runners_dir / "docker.yaml").write_text("backend: docker\n")
    (settings.runners_dir / "local.yaml").write_text("backend: local\n")
    for name, text in (runners or {}).items():
        (settings.runners_dir / f"{name}.yaml").write_text(text)
    for name, text in {"upper": UPPER, **(services or {})}.items():
        path = settings.services_dir / f"{name}.service.yaml"  # a name may hold a folder
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name, text in (files or {}).items():  # more files in the services folder
        (settings.services_dir / name).write_text(text)
    env = settings_env(settings)
    prefix = root / "nginx"
    prefix.mkdir(parents=True)
    config = subprocess.run(
        [sys.executable, "-m", "appliance", "proxy-config", "--listen", f"127.0.0.1:{proxy_port}",
         "--upstream", f"127.0.0.1:{web_port}", "--user", "root", "--pid", str(prefix / "nginx.pid"),
         "--access-log", str(prefix / "access.log")],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (prefix / "nginx.conf").write_text(config)
    stack = Stack(settings, f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{web_port}", env)
    stack.processes["web"] = subprocess.Popen([sys.executable, "-m", "appliance", "web"], env=env)
    stack.start("scheduler")
    stack.processes["proxy"] = subprocess.Popen(
        ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]
    )
    try:
        wait_http(f"http://127.0.0.1:{web_port}/healthz")
        wait_http(f"http://127.0.0.1:{proxy_port}/healthz")
        yield stack
    finally:
        running = [p for p in stack.processes.values() if p.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            assert process.wait(30) == 0, process.args
