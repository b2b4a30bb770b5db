"""Reuse of identical results: a job of a service that allows it (``reuse: true`` in its
file), whose submitter did not refuse it (``_reuse=false``), is answered from an earlier
job that completed with exactly the same run, with no container started.

"The same run" is a key (``appliance.reusekey``). A job whose runner cannot say what an
image is (no ``ImageIdentity``), a TES task (staged or mounted data), or a step without
an image is never reused nor reusable.

Most hits are answered by the web process at submission (``appliance.reusing``), from
the image ids the scheduler publishes (``appliance.scheduler.images``). The others (an
image not published yet, or not checked lately) are answered here: the key is made when
the job's first step is about to start. If an earlier job completed with it and its
outputs are still there, they are copied into the new job's directory and the job is
recorded COMPLETED with ``reused_from``; otherwise the job runs, and when it completes
its key is recorded for the next one (``Store.results``).
"""

from __future__ import annotations

import os
from pathlib import Path

from appliance import safefs
from appliance.jobrecord import JobRecord, OutputRecord
from appliance.plan import Plan
from appliance.reusekey import CHUNK, reusable
from appliance.runners.base import ImageIdentity


def wanted(job: JobRecord, plan: Plan, step: int) -> bool:
    """Whether this start may be answered from an earlier job (and make a key)."""
    return bool(job.get("reuse")) and step == 0 and reusable(plan)


async def image_ids(plan: Plan, backend: object) -> list[str] | None:
    """Each step's image by content id; None if the backend cannot say, or lacks one."""
    if not isinstance(backend, ImageIdentity):
        return None
    found = []
    for step in plan.steps:
        image_id = await backend.image_id(str(step.image))
        if image_id is None:
            return None
        found.append(image_id)
    return found


def copy_outputs(source: Path, target: Path, outputs: list[OutputRecord]) -> bool:
    """Copy the earlier job's recorded outputs into the new job's directory (regular
    files only, never through a symlink); False if one is gone."""
    for output in outputs:
        relative = str(output["path"])
        handle = safefs.open_regular(source, relative)
        if handle is None:
            return False
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        with handle, open(os.open(destination, flags, 0o644), "wb") as out:
            while chunk := handle.read(CHUNK):
                out.write(chunk)
    return True
