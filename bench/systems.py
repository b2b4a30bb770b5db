"""The two systems under test, each in its own directory, against the same MongoDB server.

``Appliance`` is this project (``appliance web`` on hypercorn, ``appliance scheduler``,
``appliance worker``); ``Slivka`` is the previous system from PyPI (``slivka start server
-t gunicorn``, ``slivka start scheduler``, ``slivka start local-queue``). Both get the
same number of HTTP workers and of execution slots, and the same services (bench/services).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVICES = BENCH / "services"
LOCAL_SERVICES = ("trivial", "sleep", "clustalo")  # slivka-form files both systems read


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@dataclass
class Config:
    mongodb_uri: str
    http_workers: int = 2
    slots: int = 4
    python: str = str(ROOT / ".venv" / "bin" / "python")
    slivka_bin: Path = BENCH / ".venv-slivka" / "bin"


@dataclass
class System:
    """One system, set up in ``home`` with its own database; start() and stop() it."""

    name: str
    config: Config
    home: Path
    database: str
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    jobs_list = "/api/jobs"  # the job list's path (the previous system wants a slash)

    def setup(self) -> None:
        raise NotImplementedError

    def commands(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        raise NotImplementedError

    def start(self, roles: tuple[str, ...] = ("web", "scheduler", "runner")) -> None:
        log_dir = self.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for role, (argv, env) in self.commands().items():
            if role not in roles:
                continue
            log = (log_dir / f"{role}.log").open("ab")
            self.processes[role] = subprocess.Popen(
                argv, cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        if "web" in roles:
            self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for role, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} {role} exited; see {self.home}/logs/{role}.log"
                    )
            try:
                if httpx.get(f"{self.url}/api/version", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer on {self.url}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def rss(self, role: str) -> float:
        process = self.processes.get(role)
        return tree_rss_mib(process.pid) if process is not None else 0.0

    def job_url(self, job: dict[str, object]) -> str:
        return f"{self.url}{job['@url']}"

    # The 100,000-job test writes records straight into the database, as each system would.
    def job_record(self, index: int, service: str) -> dict[str, object]:
        raise NotImplementedError

    def url_of_record(self, record: dict[str, object]) -> str:
        raise NotImplementedError


class Appliance(System):
    def settings_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        env.update({
            "APPLIANCE_MONGODB_URI": self.config.mongodb_uri,
            "APPLIANCE_MONGODB_DATABASE": self.database,
            "APPLIANCE_JOBS_DIR": str(self.home / "jobs"),
            "APPLIANCE_UPLOADS_DIR": str(self.home / "uploads"),
            "APPLIANCE_SERVICES_DIR": str(self.home / "services"),
            "APPLIANCE_RUNNERS_DIR": str(self.home / "runners"),
            "APPLIANCE_SCHEDULER_ADDRESS": f"ipc://{self.home}/scheduler.sock",
            "APPLIANCE_WORKER_ADDRESS": f"ipc://{self.home}/worker.sock",
            "APPLIANCE_WEB_BIND": f"127.0.0.1:{self.port}",
            "APPLIANCE_WEB_WORKERS": str(self.config.http_workers),
            "APPLIANCE_INSTANCE": f"bench{self.port}",
            "APPLIANCE_LOG_LEVEL": "WARNING",
            "APPLIANCE_PUBLIC_JOB_LISTS": "true",  # compared with the previous system's open list
            # one address sends everything: quotas high enough never to refuse, still checked
            "APPLIANCE_CLIENT_MAX_ACTIVE_JOBS": "1000000000",
            "APPLIANCE_MAX_QUEUED_JOBS": "1000000000",
            # the filtered list at 100,000 jobs on FerretDB takes longer than the default
            # 20 s limit of one database call; the previous system has no limit
            "APPLIANCE_DATABASE_TIMEOUT": "120",
        })  # fmt: skip
        return env

    def setup(self) -> None:
        for sub in ("jobs", "uploads", "services", "runners"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        for name in LOCAL_SERVICES:
            shutil.copy(SERVICES / "slivka" / f"{name}.service.yaml", self.home / "services")
        for path in (SERVICES / "appliance").glob("*.service.yaml"):
            shutil.copy(path, self.home / "services")
        docker = (BENCH / "runners" / "docker.yaml").read_text()
        docker = docker.replace("slots: 4", f"slots: {self.config.slots}")
        (self.home / "runners" / "docker.yaml").write_text(docker)
        shutil.copy(BENCH / "runners" / "local.yaml", self.home / "runners")

    def commands(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        env = self.settings_env()
        appliance = [self.config.python, "-m", "appliance"]
        return {
            "web": ([*appliance, "web"], env),
            "scheduler": ([*appliance, "scheduler"], env),
            "runner": ([*appliance, "worker", "--slots", str(self.config.slots)], env),
        }

    def job_record(self, index: int, service: str) -> dict[str, object]:
        from datetime import UTC, datetime, timedelta

        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=index)
        job_id = f"bench{index:011d}"
        upload = f"upload{index:010d}"
        return {
            "_id": job_id, "service": service, "state": "COMPLETED", "submitted_at": at,
            "parameters": {"input": upload}, "values": {"input": {"file": upload}},
            "lease_owner": None, "lease_expires": None, "lease_gen": 1, "claims": 1,
            "runner": "local", "backend": "local", "handle": job_id,
            "command": ["cat", "input.fa"], "staged": ["input.fa"], "queued_at": at,
            "started_at": at, "completed_at": at + timedelta(seconds=1), "exit_code": 0,
            "error": None, "outputs": [{"id": "log", "path": "stdout"}],
        }  # fmt: skip

    def url_of_record(self, record: dict[str, object]) -> str:
        return f"{self.url}/api/jobs/{record['_id']}"


class Slivka(System):
    jobs_list = "/api/jobs/"

    def setup(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if not (self.home / "settings.yaml").exists():
            subprocess.run([str(self.config.slivka_bin / "slivka"), "init", str(self.home / "x")],
                           check=True, capture_output=True)  # fmt: skip
            for item in (self.home / "x").iterdir():
                shutil.move(str(item), self.home / item.name)
            (self.home / "x").rmdir()
        for old in (self.home / "services").glob("*.service.yaml"):
            old.unlink()
        for path in (SERVICES / "slivka").glob("*.service.yaml"):
            shutil.copy(path, self.home / "services")
        shutil.copy(BENCH / "docker-run", self.home / "docker-run")
        host, port = self.config.mongodb_uri.split("://", 1)[1].rstrip("/").split("/")[0], ""
        text = (self.home / "settings.yaml").read_text()
        text = text.replace("server.host: 127.0.0.1:4040", f"server.host: 127.0.0.1:{self.port}")
        text = text.replace("local-queue.host: tcp://127.0.0.1:4041",
                            f"local-queue.host: ipc://{self.home}/local-queue.sock")  # fmt: skip
        text = text.replace("mongodb.host: 127.0.0.1:27017", f"mongodb.host: {host}{port}")
        text = text.replace("mongodb.database: slivka", f"mongodb.database: {self.database}")
        (self.home / "settings.yaml").write_text(text)

    def commands(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        slivka = str(self.config.slivka_bin / "slivka")
        env = dict(os.environ, SLIVKA_HOME=str(self.home))
        env["PATH"] = f"{self.config.slivka_bin}:{env.get('PATH', '')}"
        home = ["--home", str(self.home)]
        workers = str(self.config.http_workers)
        slots = str(self.config.slots)
        return {
            "web": ([slivka, "start", *home, "server", "-t", "gunicorn", "-w", workers], env),
            "scheduler": ([slivka, "start", *home, "scheduler"], env),
            "runner": ([slivka, "start", *home, "local-queue", "-w", slots], env),
        }

    def job_record(self, index: int, service: str) -> dict[str, object]:
        from datetime import UTC, datetime, timedelta

        from bson import ObjectId

        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=index)
        oid = ObjectId(index.to_bytes(12, "big"))
        workdir = str(self.home / "media" / "jobs" / str(oid))
        return {
            "_id": oid, "service": service, "inputs": {"input": f"{self.home}/media/uploads/u{index}"},
            "timestamp": at, "completion_time": at + timedelta(seconds=1), "status": 6,
            "runner": "default", "job": {"work_dir": workdir, "job_id": str(index)},
        }  # fmt: skip

    def url_of_record(self, record: dict[str, object]) -> str:
        from base64 import urlsafe_b64encode

        from bson import ObjectId

        oid = record["_id"]
        assert isinstance(oid, ObjectId)
        return f"{self.url}/api/jobs/{urlsafe_b64encode(oid.binary).decode()}"


def make(name: str, config: Config, home: Path, database: str) -> System:
    system: System = (Appliance if name == "appliance" else Slivka)(name, config, home, database)
    system.setup()
    return system
