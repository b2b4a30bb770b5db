"""Recording a submitted job: the one shape of a new job document."""

from __future__ import annotations

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
