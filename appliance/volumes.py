"""Where a backend finds the appliance's volumes: volume name -> a root it can reach.

A plan names places as ``Location(volume, path)``. This process sees the volumes at the
settings' ``jobs_dir`` and ``uploads_dir``; a backend may see them elsewhere (the Docker
engine's host, a worker pool's machine, a cluster's shared file system), and says so in
its runner configuration. ``Volumes`` turns a location into a path under the right root
and never lets one leave it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from appliance.errors import ConfigError
from appliance.plan import JOBS, UPLOADS, VOLUMES, Location
from appliance.settings import Settings


class Volumes:
    def __init__(self, roots: Mapping[str, Path | PurePosixPath]) -> None:
        missing = [v for v in VOLUMES if v not in roots]
        if missing:
            raise ConfigError(f"no root for the volumes: {', '.join(missing)}")
        self.roots = dict(roots)

    @classmethod
    def local(cls, settings: Settings) -> Volumes:
        """The volumes as this process sees them."""
        return cls({JOBS: settings.jobs_dir, UPLOADS: settings.uploads_dir})

    @classmethod
    def from_option(cls, option: Any, default: Volumes, key: str) -> Volumes:
        """Roots from a runner option (``{jobs: /srv/jobs, uploads: ...}``); volumes it does
        not name keep the default's roots."""
        if option is None:
            return default
        roots = dict(default.roots)
        for name, root in dict(option).items():
            if name not in VOLUMES:
                raise ConfigError(
                    f"unknown volume {name!r} (known: {', '.join(VOLUMES)})", key=f"{key}.{name}"
                )
            if not str(root).startswith("/"):
                raise ConfigError(f"expected an absolute path, got {root!r}", key=f"{key}.{name}")
            roots[name] = PurePosixPath(str(root))
        return cls(roots)

    def path(self, location: Location) -> Path:
        """Where ``location`` is under these roots (no symlinks are followed here)."""
        return Path(self.roots[location.volume]) / location.path

    def text(self, location: Location) -> str:
        return str(PurePosixPath(str(self.roots[location.volume])) / location.path)
