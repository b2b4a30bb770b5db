"""Recording a submitted job, the one way every submitter does it (the API, the pages, TES,
the service tests): a new job document, with its plan, claimable from that one write;
then a wake-up, a hint that only makes a scheduler look at once.

Every job is planned in one environment: the variables the service files name, as the
web process has them (``planning_environment``). The web process publishes it in the
database, and the scheduler plans its service tests with it, not with its own."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from appliance import reusing
from appliance.catalogue import Catalogue
from appliance.commandline import environment_names
from appliance.errors import StoreError
from appliance.forms import FileRef, dump_values
from appliance.jobrecord import JobRecord
from appliance.model import Service
from appliance.planning import Planned, Planner, Refused
from appliance.states import JobState
from appliance.store import Store, new_id
from appliance.waiting import waiting

log = logging.getLogger(__name__)


def echo_parameters(service: Service, values: dict[str, Any]) -> dict[str, Any]:
    """What the API shows as the job's parameters: text, or lists of text; files as their
    ids. A parameter without a value (unset, or a flag left off) is left out: the previous
    system echoed null, which Jalview's Java client cannot read (docs/api.md)."""

    def show(value: Any) -> Any:
        if isinstance(value, list):
            return [show(v) for v in value if v is not None and v is not False]
        if isinstance(value, FileRef):
            return value.id
        if isinstance(value, bool):
            return "true"
        return str(value)

    return {pid: show(values[pid]) for pid in service.parameters
            if values.get(pid) is not None and values.get(pid) is not False}  # fmt: skip


Wake = Callable[[JobRecord], Awaitable[object]]


def planning_environment(catalogue: Catalogue, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment jobs are planned in: the variables the service files name."""
    names = set().union(*(environment_names(s) for s in catalogue.services.values()))
    return {name: environ[name] for name in sorted(names) if name in environ}


async def record(store: Store, job: JobRecord, wake: Wake | None, email: str | None = None) -> None:
    """Store a new job; an ACCEPTED one is claimable from this write on, and ``wake``
    (a scheduler's wake-up, a hint) goes after it. A job that names a webhook or an
    e-mail address gets its notices first, so that no recorded job lacks one
    (``appliance.store.notices``); the address is kept in its notice only. So does one
    answered from an earlier job, the copy of its outputs (``appliance.store.copies``)."""
    if "notify" in job:
        await store.notices.add(str(job["_id"]), str(job["notify"]["url"]), job["submitted_at"])
    if email:
        job["notify_email"] = {"state": "pending"}
        await store.notices.add_email(str(job["_id"]), email, job["submitted_at"])
    if job.get("files_of"):  # answered from an earlier job: its outputs are to be copied
        await store.copies.add(str(job["_id"]), str(job["files_of"]), job["submitted_at"])
    await store.insert_job(job)
    if wake is not None and is_active(job):
        await wake(job)


async def record_job(
    store: Store,
    planner: Planner,
    service: Service,
    values: dict[str, Any],
    *,
    client: str = "",
    counted: bool = True,
    request_id: str = "",
    webhook: str | None = None,
    email: str | None = None,
    reuse: bool = True,
    wake: Wake | None = None,
    answers: reusing.Answers | None = None,
) -> JobRecord:
    """Plan a new, validated job and store it; returns its document. It is ACCEPTED with
    its plan and runner (claimable by this one write), or already final (REJECTED, ERROR)
    when no plan can be made. (``counted``: in the usage statistics; ``webhook``: a URL
    posted to when it ends, and ``email``, an address told, both checked by the caller; ``reuse``: False when the submitter
    refuses an earlier identical job's results; with ``answers``, an identical earlier job
    may answer it at once: ``appliance.reusing``.)"""
    job_id = new_id()
    now = await store.now()
    job: JobRecord = {
        "_id": job_id,
        "kind": "service",
        "service": service.id,
        "state": str(JobState.ACCEPTED),
        "submitted_at": now,
        "parameters": echo_parameters(service, values),
        "values": dump_values(values),
        "client": client,
        "waiting": waiting("scheduler", now),
    }
    if request_id:
        job["request_id"] = request_id
    if webhook:
        job["notify"] = {"url": webhook, "state": "pending"}
    if service.reuse and reuse:  # may be answered from an identical earlier job
        job["reuse"] = True
    planned = planner.plan(job_id, service, values)
    if isinstance(planned, Planned):
        job["runner"], job["plan"] = planned.runner, planned.plan.stored()
        if job.get("reuse") and answers is not None:
            job.update(await answers.answer(job, planned.runner, planned.plan) or {})
    elif isinstance(planned, Refused):
        job["state"], job["error"] = str(planned.state), planned.reason
        job["completed_at"], job["runner"], job["waiting"] = now, None, None
    await record(store, job, wake, email)
    if not counted:  # a service test's job: not a user's submission
        return job
    try:  # the statistics are not worth failing a submission for
        await store.count_submission(service.id, now.strftime("%Y-%m"))
    except StoreError as exc:
        log.warning("job %s: not counted in the usage statistics: %s", job_id, exc)
    return job


def is_active(job: JobRecord) -> bool:
    return not JobState(job["state"]).finished
