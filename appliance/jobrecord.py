"""The job record: the one shape of a job document in MongoDB, field by field.

Every module that reads or writes a job uses these types, so a misspelt field is a type
error, not a silent new key. Who writes what:

- the web process, once, at submission: ``_id``, ``kind``, ``service``, ``state``
  (ACCEPTED, or REJECTED/ERROR when no plan can be made), ``submitted_at``,
  ``parameters`` (what the API echoes), ``values`` (file values as references, never
  paths), ``runner`` and ``plan`` (what to run, see ``appliance.plan``);
- after that only the holder of the job's lease (a scheduler), through the store:
  leases, ``handle``, ``step``, ``steps``, times, ``exit_code``, ``error``, ``outputs``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypedDict

JobKind = Literal["service", "task"]


class FileValue(TypedDict):
    """A file parameter's value as stored: a reference, resolved to a location in the plan."""

    id: str  # an upload id, or "<job id>/<path>" for an earlier job's output
    label: str
    media_type: str


class StepRecord(TypedDict, total=False):
    """How one step of the plan went."""

    handle: str
    exit_code: int | None
    message: str
    started_at: datetime | None
    completed_at: datetime | None


class OutputRecord(TypedDict):
    id: str
    path: str
    media_type: str
    name: str


class JobRecord(TypedDict, total=False):
    _id: str
    kind: JobKind
    service: str
    state: str
    submitted_at: datetime
    parameters: dict[str, Any]
    values: dict[str, Any]
    runner: str | None
    plan: str | dict[str, Any]  # JSON text (a document in records made before 2026-12)
    client: str  # the address it came from (quotas per client, appliance.web.quotas)
    request_id: str  # the request that submitted it (the proxy's id; appliance.logs)
    format: int  # the stored format it is in (appliance.store.formats)
    # leases (appliance.store.claims)
    lease_owner: str | None
    lease_expires: datetime | None
    lease_gen: int
    claims: int
    # set by the scheduler that runs it
    backend: str
    handle: str | None
    step: int
    steps: list[StepRecord]
    queued_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    exit_code: int | None
    error: str | None
    outputs: list[OutputRecord]
    attempts: int
    first_failure_at: datetime | None
    # why it is not running yet (appliance.waiting): reason, message, since; None once it runs
    waiting: dict[str, Any] | None
    # retention (appliance.scheduler.retention): deleted once this is older than a grace period
    expiring_at: datetime | None
    # TES tasks (kind "task", appliance.tes): the task as accepted, whose it is, and what
    # the scheduler's staging did
    task: dict[str, Any]
    owner: str
    staging: bool
    tes_outputs: list[dict[str, str]]
    system_logs: list[str]
    # a webhook (appliance.webhooks): url and state at submission; how its posts went, by
    # the scheduler that sends it (appliance.scheduler.notifying)
    notify: dict[str, Any]
    # how the e-mail it named went (the address is in its notice only)
    notify_email: dict[str, Any]
    # reuse (appliance.scheduler.reuse): allowed at submission; the key of what it ran;
    # the earlier job whose results answered it
    reuse: bool
    reuse_key: str
    reused_from: str
    # answered at submission (appliance.reusing): the job whose directory holds its
    # outputs until a scheduler has copied them into its own
    files_of: str


def files_dir(job: JobRecord) -> str:
    """The job whose directory holds this job's outputs: its own, or the earlier job's
    while the outputs of a job answered at submission are being copied."""
    return str(job.get("files_of") or job["_id"])
