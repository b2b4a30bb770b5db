"""Job directories: where each job runs, what it leaves behind, and which outputs count."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.jobwrap import EXIT_RECORD, write_exit_record
from appliance.model import Output, Service

STD_STREAMS = ("stdout", "stderr")


def job_dir(jobs_dir: Path, job_id: str) -> Path:
    return jobs_dir / job_id


def make_job_dir(path: Path, owner: tuple[int, int] | None = None) -> None:
    """Create the job's directory; with ``owner``, hand it to that uid:gid (when we are root)."""
    path.mkdir(parents=True, exist_ok=True)
    if owner is not None and os.geteuid() == 0:
        os.chown(path, *owner)
    path.chmod(0o755)


__all__ = ["EXIT_RECORD", "read_exit_record", "write_exit_record"]


def read_exit_record(path: Path) -> tuple[int, str] | None:
    try:
        data: Any = json.loads((path / EXIT_RECORD).read_text())
        return int(data["exit_code"]), str(data.get("message", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class FoundOutput:
    output_id: str
    path: str
    media_type: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.output_id, "path": self.path, "media_type": self.media_type,
                "name": self.name}  # fmt: skip


def collect_outputs(
    service: Service,
    workdir: Path,
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[FoundOutput]:
    """The files in ``workdir`` that match the service's outputs, plus stdout and stderr.

    Only regular files inside the directory count: a symlink the job made pointing
    elsewhere is left out, and so are the staged inputs (``exclude``).
    """
    root = workdir.resolve()
    found: dict[str, FoundOutput] = {}
    outputs = list(service.outputs)
    declared = {o.path for o in outputs}
    outputs += [Output(s, s, s, "text/plain") for s in STD_STREAMS if s not in declared]
    for output in outputs:
        for match in sorted(root.glob(output.path)):
            relative = match.relative_to(root).as_posix()
            if relative in found or relative in exclude or relative.startswith("."):
                continue
            if match.is_symlink() or not match.is_file():
                continue
            found[relative] = FoundOutput(output.id, relative, output.media_type, output.name)
    return list(found.values())
