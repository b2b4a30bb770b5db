"""A bundle of the previous system's service files, unchanged, for test_previous_files.py
and test_parity.py: its own example project (``slivka init``'s template), a file of its
form for a real tool (Clustal Omega), the parity tests' service, files in the idioms of
the previous system's public deployment (tests/data/previous/idioms), each beside a
Dockerfile, and one without (it runs on the bundle's local worker pool)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.systems import Config, Slivka
from tests.conftest import ROOT

PROJECT = "appliance-test-previous"
# The previous system's example needs `python` and its files where SLIVKA_HOME says.
EXAMPLE_DOCKERFILE = """\
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN command -v python3 >/dev/null || (apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \\
    && rm -rf /var/lib/apt/lists/*); ln -sf "$(command -v python3)" /usr/local/bin/python
COPY scripts /srv/slivka/scripts
WORKDIR /job
"""


def previous_template() -> Path:
    """``slivka init``'s project template, from the previous system's own package."""
    venv = os.environ.get("APPLIANCE_TEST_SLIVKA")
    if not venv:
        pytest.fail("no previous system: run the tests with scripts/test (it installs one)")
    [template] = Path(venv).glob("lib/python3*/site-packages/slivka/project_template")
    return template


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_previous_services(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of service folders (APPLIANCE_SERVICES) of that bundle."""
    root = tmp_path_factory.mktemp("services")
    template = previous_template()
    example = root / "example"
    example.mkdir()
    shutil.copy(template / "services" / "example.service.yaml", example)
    shutil.copytree(template / "scripts", example / "scripts",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(template / "testdata", example / "testdata")
    (example / "Dockerfile").write_text(EXAMPLE_DOCKERFILE)
    clustalo = root / "clustalo-previous"
    shutil.copytree(ROOT / "tests" / "data" / "previous" / "clustalo", clustalo)
    shutil.copy(ROOT / "services" / "clustalo" / "Dockerfile", clustalo)
    shutil.copy(ROOT / "services" / "clustalo" / "test.fa", clustalo)
    parity = root / "fake"  # the API parity tests' service (test_parity.py)
    shutil.copytree(ROOT / "tests" / "data" / "previous" / "parity", parity)
    (parity / "Dockerfile").write_text("ARG BASE=debian:bookworm-slim\nFROM ${BASE}\n")
    idioms = ROOT / "tests" / "data" / "previous" / "idioms"  # slivka-bio's idioms
    for name in ("options", "lists", "wrapper"):
        shutil.copytree(idioms / "support" / name, root / name)
        shutil.copy(idioms / f"{name}.service.yaml", root / name)
    sort = root / "sort"  # no Dockerfile: it runs on the worker pool
    sort.mkdir()
    shutil.copy(ROOT / "tests" / "data" / "previous" / "sort.service.yaml", sort)
    for path in [root, *root.rglob("*")]:  # the containers read them as uid 1000
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@contextlib.contextmanager
def previous_system_running(home: Path, mongodb_uri: str, database: str) -> Iterator[str]:
    """The previous system (its server under gunicorn, its scheduler and local queue, as
    bench/ starts it), serving the parity tests' service file: its base URL."""
    venv = os.environ.get("APPLIANCE_TEST_SLIVKA")
    if not venv:
        pytest.fail("no previous system: run the tests with scripts/test (it installs one)")
    system = Slivka("previous", Config(mongodb_uri, slivka_bin=Path(venv) / "bin"), home, database)
    system.setup()
    for old in (home / "services").glob("*.service.yaml"):
        old.unlink()
    shutil.copy(ROOT / "tests" / "data" / "previous" / "parity" / "fake.service.yaml",
                home / "services" / "fake.service.yaml")  # fmt: skip
    system.start()
    try:
        yield system.url
    finally:
        system.stop()
