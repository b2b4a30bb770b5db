"""Recording a submitted job: the one shape of a new job document."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from appliance.forms import FileRef, dump_values
from appliance.model import Service
from appliance.states import JobState
from appliance.store import Store, new_id, utcnow


def echo_parameters(service: Service, values: dict[str, Any]) -> dict[str, Any]:
    """What the API shows as the job's parameters: text, lists, null; files as their ids."""

    def show(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [show(v) for v in value]
        if isinstance(value, FileRef):
            return value.id
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return {pid: show(values.get(pid)) for pid in service.parameters}


async def record_job(
    store: Store, service: Service, values: dict[str, Any], *, with_entry: bool = True
) -> dict[str, Any]:
    """Store a new, validated job as ACCEPTED; returns its document. (``with_entry``:
    see ``Store.insert_job``.)"""
    job = {
        "_id": new_id(),
        "service": service.id,
        "state": str(JobState.ACCEPTED),
        "submitted_at": utcnow(),
        "parameters": echo_parameters(service, values),
        "values": dump_values(values),
    }
    await store.insert_job(job, with_entry=with_entry)
    return job


async def record_entry(store: Store, job_id: str, submitted_at: object) -> None:
    """A new job's ``active`` entry, made by the scheduler from the web's wake-up alone
    when it says when the job came (a job is ACCEPTED and without a lease until a
    scheduler claims it, and the claim reads the job itself); else from the job's record."""
    try:
        when = datetime.fromisoformat(str(submitted_at))
    except ValueError:
        await store.add_entry_for(job_id)
        return
    await store.add_entry({"_id": job_id, "state": str(JobState.ACCEPTED), "submitted_at": when})
