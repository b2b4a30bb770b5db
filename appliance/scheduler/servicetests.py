"""Service health: the service files' ``tests`` (the previous system's section), run as jobs.

Each test of a service whose runner this scheduler runs is submitted as an ordinary job
(not counted in the usage statistics, its client ``service-test``) when the scheduler starts
and then every test's ``interval``; its end sets the service's status, which the API shows
where the previous system does:

- OK: the test job COMPLETED;
- DOWN: it FAILED, or did not end within the test's ``timeout`` (it is then cancelled);
- WARNING: it could not be run (ERROR, REJECTED, INTERRUPTED): the tool may be fine, the
  appliance could not try it.

Several schedulers may share a database: a test is claimed in the database first
(``Store.claim_service_test``), so one runs at a time per service. A test's files are paths
relative to its service file (in a file of the previous system, ``${SLIVKA_HOME}/`` names
that folder too), uploaded like a user's (and removed with old uploads).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError, FormErrors, StoreError
from appliance.forms import FileRef, RawValue, validate
from appliance.mediatypes import sniff_media_type
from appliance.model import ParamType, Service, ServiceTest
from appliance.plan import UPLOADS, Location
from appliance.planning import Planner
from appliance.scheduler.base import Base, log
from appliance.scheduler.rounds import every
from appliance.states import JobState
from appliance.store import new_id, utcnow
from appliance.submission import planning_environment, record_job

CHECK_SECONDS = 10.0  # how often due tests are looked for
CLIENT = "service-test"


@dataclass
class Going:
    service: Service
    job_id: str
    deadline: float


def outcome(state: JobState, error: str | None, exit_code: int | None) -> tuple[str, str]:
    """The service's status after its test job ended in ``state``."""
    if state is JobState.COMPLETED:
        return "OK", ""
    if state is JobState.FAILED:
        code = f" with exit code {exit_code}" if exit_code is not None else ""
        return "DOWN", f"the test job failed{code}" + (f": {error}" if error else "")
    return "WARNING", f"the test job could not run ({state.value})" + (
        f": {error}" if error else ""
    )


class ServiceTests:
    def __init__(self, scheduler: Base, check_seconds: float = CHECK_SECONDS) -> None:
        self.scheduler = scheduler
        self.check_seconds = check_seconds
        self.going: dict[str, Going] = {}  # service id -> its test job
        self.started = False
        self.told_fallback = False

    def tested(self) -> list[tuple[Service, ServiceTest]]:
        """The services with tests, each with its first applicable test (whichever
        scheduler runs the job's runner runs it; this one only submits and follows it)."""
        found = []
        for service in self.scheduler.catalogue.services.values():
            if not service.tests:
                continue
            names = set(service.runners) | {r.runner for r in service.runners.values()}
            test = next((t for t in service.tests if not t.applicable_runners
                         or names & set(t.applicable_runners)), None)  # fmt: skip
            if test is not None:
                found.append((service, test))
        return found

    async def run(self) -> None:
        await every(lambda: self.check_seconds, "service tests", self.round, log)

    async def round(self) -> None:
        store = self.scheduler.store
        first = not self.started
        self.started = True
        for service, test in self.tested():
            if service.id in self.going:
                continue
            claimed = await store.claim_service_test(
                service.id, self.scheduler.owner, test.timeout, test.interval, due_only=not first
            )
            if claimed:
                await self.start(service, test)
        for service_id, going in list(self.going.items()):
            await self.follow(service_id, going)

    async def start(self, service: Service, test: ServiceTest) -> None:
        store = self.scheduler.store
        try:
            values = await validate(service, await self.raw_values(service, test))
        except (FormErrors, OSError, ApplianceError) as exc:
            await store.end_service_test(service.id, "WARNING", f"the test is not valid: {exc}")
            return
        job = await record_job(store, await self.planner(), service, values, client=CLIENT,
                               counted=False, reuse=False, wake=self._wake)  # fmt: skip
        state = JobState(job["state"])
        if state.finished:
            status, message = outcome(state, job.get("error"), job.get("exit_code"))
            await store.end_service_test(service.id, status, message)
            return
        log.info("service %s: test job %s submitted", service.id, job["_id"])
        self.going[service.id] = Going(
            service, str(job["_id"]), time.monotonic() + self._timeout(service)
        )

    async def planner(self) -> Planner:
        """Test jobs are planned as users' jobs are: in the environment the web process
        published (this process's own only until one has)."""
        catalogue = self.scheduler.catalogue
        environment = await self.scheduler.store.planning_environment()
        if environment is None:
            if not self.told_fallback:
                log.warning("no web process has published its planning environment yet: "
                            "service test jobs are planned with the scheduler's")  # fmt: skip
                self.told_fallback = True
            environment = planning_environment(catalogue, os.environ)
        return Planner(catalogue.runners, environment)

    async def _wake(self, job: object) -> None:
        self.scheduler.kick.set()

    def _timeout(self, service: Service) -> float:
        test = next((t for s, t in self.tested() if s.id == service.id), None)
        return test.timeout if test is not None else 900.0

    async def follow(self, service_id: str, going: Going) -> None:
        store = self.scheduler.store
        job = await store.get_job(going.job_id)
        if job is None:
            del self.going[service_id]
            await store.end_service_test(service_id, "WARNING", "the test job disappeared")
            return
        state = JobState(job["state"])
        if state.finished:
            del self.going[service_id]
            status, message = outcome(state, job.get("error"), job.get("exit_code"))
            log.info(
                "service %s: test job %s %s: %s", service_id, going.job_id, state.value, status
            )
            await store.end_service_test(service_id, status, message)
        elif time.monotonic() > going.deadline:
            del self.going[service_id]
            with contextlib.suppress(StoreError):
                await store.request_cancel(going.job_id)
            self.scheduler.poke.set()
            await store.end_service_test(
                service_id,
                "DOWN",
                f"the test job did not end within {self._timeout(going.service):g} s",
            )

    async def raw_values(self, service: Service, test: ServiceTest) -> dict[str, list[RawValue]]:
        """The test's parameters as a form: its files uploaded, like a user's."""
        raw: dict[str, list[RawValue]] = {}
        for name, value in test.parameters.items():
            param = service.parameters.get(name)
            items: list[Any] = value if isinstance(value, list) else [value]
            if param is not None and param.type is ParamType.FILE:
                raw[name] = [await self.upload(service, str(item)) for item in items]
            else:
                raw[name] = [str(item).lower() if isinstance(item, bool) else str(item)
                             for item in items]  # fmt: skip
        return raw

    async def upload(self, service: Service, relative: str) -> FileRef:
        folder = Path(service.source).resolve().parent
        for home in ("${SLIVKA_HOME}/", "$SLIVKA_HOME/"):  # the previous system's project
            if service.format == "slivka" and relative.startswith(home):  # folder: this one
                relative = relative.removeprefix(home)
        source = (folder / relative).resolve()
        if not source.is_relative_to(folder) or not source.is_file():
            raise ApplianceError(
                f"the test's file {relative!r} is not a file beside the service file"
            )
        settings = self.scheduler.settings
        file_id = new_id()
        target = settings.uploads_dir / file_id
        await asyncio.to_thread(shutil.copyfile, source, target)
        media_type = await asyncio.to_thread(sniff_media_type, target)
        await self.scheduler.store.insert_file({
            "_id": file_id, "path": file_id, "label": source.name, "size": target.stat().st_size,
            "media_type": media_type, "created_at": utcnow(),
        })  # fmt: skip
        return FileRef(file_id, target, source.name, media_type, Location(UPLOADS, file_id))
