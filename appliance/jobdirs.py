"""Job directories: making them, and which files in them are a job's outputs."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from appliance.jobrecord import OutputRecord
from appliance.plan import OutputPattern, Plan
from appliance.safefs import fresh_file, is_plain, make_dirs


def make_job_dir(path: Path, owner: tuple[int, int] | None = None) -> None:
    """Create the job's directory; with ``owner``, hand it to that uid:gid (when we are root)."""
    path.mkdir(parents=True, exist_ok=True)
    if owner is not None and os.geteuid() == 0:
        os.chown(path, *owner)
    path.chmod(0o755)


def prepare_step(workdir: Path, plan: Plan, step: int) -> None:
    """Before a step starts: the folders the plan's mounts and its steps' kept output go
    in, and fresh, empty files for this step's stdout and stderr. An earlier step may
    have left symlinks or FIFOs under those names: they are replaced or refused (an
    ``appliance.safefs.UnsafePathError``), never followed, so no backend's writing of the
    step's output lands outside the job's directory."""
    folders = {m.source for m in plan.mounts}
    for each in plan.steps:
        folders.update(posixpath.dirname(p) for p in (each.stdout, each.stderr))
    for folder in sorted(folders - {""}):
        make_dirs(workdir, folder)
    current = plan.steps[step]
    for stream in (current.stdout, current.stderr):
        fresh_file(workdir, stream)


def directory_size(workdir: Path, limit: int) -> int:
    """The bytes the files under ``workdir`` take (symlinks not followed), counted until
    ``limit`` is passed (then a number above it)."""
    total = 0
    for folder, _, names in os.walk(workdir):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
            if total > limit:
                return total
    return total


@dataclass(frozen=True)
class FoundOutput:
    output_id: str
    path: str
    media_type: str
    name: str

    def to_json(self) -> OutputRecord:
        return {"id": self.output_id, "path": self.path, "media_type": self.media_type,
                "name": self.name}  # fmt: skip


def output_patterns(plan: Plan) -> list[OutputPattern]:
    """The plan's outputs, and each step's stdout and stderr unless an output names them."""
    patterns = list(plan.outputs)
    declared = {o.path for o in patterns}
    for step in plan.steps:
        for stream, path in (("stdout", step.stdout), ("stderr", step.stderr)):
            if path not in declared:
                patterns.append(OutputPattern(stream, path, stream, "text/plain"))
                declared.add(path)
    return patterns


def collect_outputs(plan: Plan, workdir: Path) -> list[FoundOutput]:
    """The files in ``workdir`` that match the plan's outputs, plus stdout and stderr.

    Only regular files inside the directory count, reached without a symlink: a
    symlink the job made pointing elsewhere (or a folder it made into one) is left out,
    and so are the staged inputs and hidden files.
    """
    root = workdir.resolve()
    exclude = {i.path for i in plan.inputs}
    found: dict[str, FoundOutput] = {}
    for output in output_patterns(plan):
        for match in sorted(root.glob(output.path)):
            relative = match.relative_to(root).as_posix()
            if relative in found or relative in exclude or relative.startswith("."):
                continue
            if not is_plain(root, relative):
                continue
            found[relative] = FoundOutput(output.id, relative, output.media_type, output.name)
    return list(found.values())
