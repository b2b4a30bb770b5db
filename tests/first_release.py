"""The first release (0.1.0), for the upgrade tests: its tree from its commit (the tag
v0.1.0 does not travel with every clone; the commit does), and its images."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT

COMMIT = "0955c1e"
VERSION = "0.1.0"


def first_release(folder: Path, *, images: bool = True) -> Path:
    """Its tree in ``folder``/first-release; with ``images``, its appliance, proxy and
    FerretDB images built by its own scripts/build-images (no service images: their tags
    are this checkout's too)."""
    tree = folder / "first-release"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", COMMIT], capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    if images:
        empty = folder / "no-services"
        empty.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        built = subprocess.run([str(tree / "scripts" / "build-images"), "--airgapped"],
                               env=env | {"APPLIANCE_SERVICES": str(empty)}, cwd=tree,
                               capture_output=True, text=True, timeout=1800)  # fmt: skip
        assert built.returncode == 0, built.stderr[-3000:]
    return tree
