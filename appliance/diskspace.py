"""How full the uploads and jobs volumes are, and the warning an operator should see
well before new work is refused (``disk_warning_percent``, then ``min_free_disk``'s 507).

Read by readiness (``/readyz``), ``appliance check`` and the gauges in ``/metrics``; each
reading is one ``statvfs`` per volume, done off the event loop by its callers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from appliance.settings import Settings
from appliance.units import format_size


@dataclass(frozen=True)
class Space:
    volume: str  # "uploads" or "jobs"
    path: Path
    size: int  # bytes the file system has for its users
    free: int  # bytes an unprivileged writer may still use

    @property
    def used_percent(self) -> float:
        return 100.0 * (self.size - self.free) / self.size if self.size else 0.0


def free_bytes(path: Path) -> int:
    """Free bytes under ``path`` for an unprivileged writer; -1 if it cannot be read."""
    try:
        info = os.statvfs(path)
    except OSError:
        return -1
    return info.f_bavail * info.f_frsize


def space_of(volume: str, path: Path) -> Space | None:
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    # f_blocks counts the blocks kept for root too; a user sees f_bavail of the rest
    size = (info.f_blocks - info.f_bfree + info.f_bavail) * info.f_frsize
    return Space(volume, path, size, info.f_bavail * info.f_frsize)


def volumes(settings: Settings) -> list[Space]:
    """The two volumes' space (one entry each; a volume that cannot be read is left out)."""
    found = [space_of("uploads", settings.uploads_dir), space_of("jobs", settings.jobs_dir)]
    return [space for space in found if space is not None]


def warnings(settings: Settings, spaces: list[Space]) -> list[str]:
    """A sentence for each volume fuller than ``disk_warning_percent``."""
    limit = settings.disk_warning_percent
    if not limit:
        return []
    return [
        f"the {s.volume} volume ({s.path}) is {s.used_percent:.0f}% full "
        f"({format_size(s.free)} free of {format_size(s.size)}; warning at {limit:g}%); "
        f"new work is refused (507) below {format_size(settings.min_free_disk)} free: "
        "free space (appliance purge) or grow the volume"
        for s in spaces
        if s.used_percent >= limit
    ]
