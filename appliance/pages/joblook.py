"""What a job page shows of a job's directory: output sizes, previews of text outputs, and
the tail of a running step's stdout and stderr. Reads are small and bounded, never through
a symlink or into a FIFO a job left (``appliance.safefs``), and run off the event loop."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from appliance import safefs
from appliance.jobrecord import JobRecord, files_dir
from appliance.pages import alignments, trees
from appliance.pages.alignments import AlignmentView
from appliance.pages.trees import TreeView
from appliance.plan import plan_mapping
from appliance.units import format_size

PREVIEW_BYTES = 32 * 1024
TAIL_BYTES = 4 * 1024
TEXT_TYPES = {
    "application/clustal", "application/fasta", "application/json", "application/x-stockholm",
    "application/xml", "application/x-nh", "chemical/x-pdb",
}  # fmt: skip
ALIGNMENT_TYPES = {"application/clustal", "application/fasta"}
TREE_TYPES = {"text/x-nh", "application/x-nh", "text/x-newick"}


@dataclass(frozen=True)
class OutputView:
    label: str
    path: str
    media_type: str
    size: str
    url: str
    preview: str | None
    truncated: bool
    empty: bool = False
    alignment: AlignmentView | None = None  # drawn (appliance.pages.alignments)
    tree: TreeView | None = None  # drawn (appliance.pages.trees)
    not_drawn: str = ""  # why an alignment or tree is shown as text only

    @property
    def download_name(self) -> str:
        return self.path.replace("/", "_")


def is_text(media_type: str) -> bool:
    return (
        media_type.startswith("text/") or media_type in TEXT_TYPES or media_type.endswith("+json")
    )


def _read(workdir: Path, path: str, size: int, from_end: bool) -> tuple[bytes, int] | None:
    try:
        handle = safefs.open_regular(workdir, path)
    except OSError:
        return None
    if handle is None:
        return None
    with handle:
        total = os.fstat(handle.fileno()).st_size
        if from_end and total > size:
            handle.seek(total - size)
        return handle.read(size), total


def _preview(data: bytes) -> str | None:
    if b"\0" in data:
        return None
    return data.decode("utf-8", errors="replace")


def _outputs(job: JobRecord, jobs_dir: Path, jobs_url: str) -> list[OutputView]:
    workdir = jobs_dir / files_dir(job)
    views = []
    for output in job.get("outputs") or []:
        path = str(output["path"])
        media_type = str(output.get("media_type") or "")
        read = _read(workdir, path, PREVIEW_BYTES, from_end=False) if is_text(media_type) else None
        if read is None:
            try:
                total = (workdir / path).lstat().st_size
            except OSError:
                total = -1
            preview, truncated = None, False
        else:
            data, total = read
            preview, truncated = (_preview(data) if data else None), total > len(data)
        view = OutputView(
            label=str(output.get("name") or output.get("id") or path), path=path,
            media_type=media_type, size=format_size(total) if total >= 0 else "",
            url=f"{jobs_url}/{files_dir(job)}/{quote(path)}", preview=preview, truncated=truncated,
            empty=total == 0,
        )  # fmt: skip
        views.append(_drawn(view, workdir, total) if total > 0 else view)
    return views


def _drawn(view: OutputView, workdir: Path, total: int) -> OutputView:
    """``view`` with its alignment or tree drawn, or the reason it is not."""
    media_type = view.media_type
    if media_type in ALIGNMENT_TYPES:
        limit, name = alignments.MAX_BYTES, "alignment"
    elif media_type in TREE_TYPES:
        limit, name = trees.MAX_BYTES, "tree"
    else:
        return view
    if total > limit:
        return replace(view, not_drawn=f"This {name} is too large to draw here "
                                       f"({format_size(total)}): its text is below.")  # fmt: skip
    read = _read(workdir, view.path, limit, from_end=False)
    if read is None:
        return view
    text = read[0].decode("utf-8", errors="replace")
    try:
        if name == "alignment":
            return replace(view, alignment=alignments.read_alignment(text, media_type))
        return replace(view, tree=trees.read_tree(text))
    except alignments.Unaligned:
        return view
    except (alignments.NotAnAlignment, trees.NotATree) as exc:
        return replace(view, not_drawn=f"Not drawn: {exc}.")


async def outputs(job: JobRecord, jobs_dir: Path, jobs_url: str) -> list[OutputView]:
    return await asyncio.to_thread(_outputs, job, jobs_dir, jobs_url)


def _streams(job: JobRecord) -> tuple[str, str]:
    steps: list[Any] = plan_mapping(job.get("plan")).get("steps") or []
    step = job.get("step") or 0
    current = steps[step] if isinstance(step, int) and 0 <= step < len(steps) else {}
    if not isinstance(current, dict):
        current = {}
    return str(current.get("stdout") or "stdout"), str(current.get("stderr") or "stderr")


def _tail(job: JobRecord, jobs_dir: Path) -> dict[str, str]:
    workdir = jobs_dir / files_dir(job)
    tails = {}
    for name, path in zip(("stdout", "stderr"), _streams(job), strict=True):
        read = _read(workdir, path, TAIL_BYTES, from_end=True)
        tails[name] = (_preview(read[0]) or "") if read is not None else ""
    return tails


async def tail(job: JobRecord, jobs_dir: Path) -> dict[str, str]:
    return await asyncio.to_thread(_tail, job, jobs_dir)
