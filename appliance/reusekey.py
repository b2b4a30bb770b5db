"""The key of a run that identical jobs may reuse (``appliance.scheduler.reuse`` and
``appliance.reusing``): SHA-256 over the service's id, each step's image by its content
id as the runner's engine has it (never by name: a rebuilt ``:latest`` is another
image), each step's command line, environment and files, the output patterns, and the
SHA-256 of every input file's content with the path it is staged at. The web process
and the scheduler make it alike, from the stored plan."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from appliance import safefs
from appliance.plan import Plan
from appliance.volumes import Volumes

CHUNK = 1024 * 1024


def reusable(plan: Plan) -> bool:
    """Whether a job with this plan may be answered from an earlier one, and make a key:
    no staged or mounted data (TES), and an image for every step."""
    return (not plan.stage_in and not plan.stage_out and not plan.mounts
            and all(s.image for s in plan.steps))  # fmt: skip


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
