"""Reuse of identical results: a job of a service that allows it (``reuse: true`` in its
file), whose submitter did not refuse it (``_reuse=false``), is answered from an earlier
job that completed with exactly the same run, with no container started.

"The same run" is a key: SHA-256 over the service's id, each step's image by its
content id as the runner's engine has it (never by name: a rebuilt ``:latest`` is
another image), each step's command line, environment and files, the output patterns,
and the SHA-256 of every input file's content with the path it is staged at. A job
whose runner cannot say what an image is (no ``ImageIdentity``), a TES task (staged or
mounted data), or a step without an image is never reused nor reusable.

The key is made when the job's first step is about to start. If an earlier job
completed with it and its outputs are still there, they are copied into the new job's
directory and the job is recorded COMPLETED with ``reused_from``; otherwise the job
runs, and when it completes its key is recorded for the next one (``Store.results``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from appliance import safefs
from appliance.jobrecord import JobRecord, OutputRecord
from appliance.plan import Plan
from appliance.runners.base import ImageIdentity
from appliance.volumes import Volumes

CHUNK = 1024 * 1024


def wanted(job: JobRecord, plan: Plan, step: int) -> bool:
    """Whether this start may be answered from an earlier job (and make a key)."""
    return (bool(job.get("reuse")) and step == 0 and not plan.stage_in and not plan.stage_out
            and not plan.mounts and all(s.image for s in plan.steps))  # fmt: skip


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


def key(service: str, plan: Plan, images: list[str], volumes: Volumes) -> str | None:
    """The job's reuse key (reads its input files: call off the event loop); None if an
    input cannot be read as a regular file."""
    inputs = []
    for item in plan.inputs:
        digest = _digest(volumes.path(item.source))
        if digest is None:
            return None
        inputs.append([item.path, digest])
    run = {
        "service": service,
        "images": images,
        "steps": [s.to_json() for s in plan.steps],
        "inputs": sorted(inputs),
        "outputs": [o.to_json() for o in plan.outputs],
    }
    return hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()


def _digest(path: Path) -> str | None:
    handle = safefs.open_regular(path.parent, path.name)
    if handle is None:
        return None
    digest = hashlib.sha256()
    with handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
