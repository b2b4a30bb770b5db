"""One version everywhere a site reads one: the package, `appliance --version`, the
images the bundle and the chart run, the chart itself, and the changelog's newest entry."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from appliance import __version__
from appliance.web.meta import version
from tests.conftest import ROOT


def test_every_place_names_the_same_version() -> None:
    pyproject = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert pyproject and pyproject.group(1) == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)  # semantic versions
    chart = yaml.safe_load((ROOT / "helm" / "appliance" / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == __version__
    values = yaml.safe_load((ROOT / "helm" / "appliance" / "values.yaml").read_text())
    assert values["image"]["tag"] == values["proxyImage"]["tag"] == __version__
    compose = (ROOT / "compose" / "compose.yaml").read_text()
    tags = re.findall(r"appliance/(?:appliance|worker|proxy):([0-9.]+)", compose)
    assert tags and set(tags) == {__version__}
    worker = (ROOT / "images" / "worker" / "Dockerfile").read_text()
    assert f"appliance/appliance:{__version__}" in worker


def test_the_command_and_the_api_say_it() -> None:
    said = subprocess.run([sys.executable, "-m", "appliance", "--version"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert said == f"appliance {__version__}"
    import asyncio

    answer = asyncio.run(version(None))  # type: ignore[arg-type]
    assert b'"applianceVersion":"' + __version__.encode() + b'"' in answer.body


def test_the_changelog_starts_with_this_version_and_says_what_changes_for_sites() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    entries = re.findall(r"^## (\d+\.\d+\.\d+)", text, re.M)
    assert entries and entries[0] == __version__ and entries[-1] == "0.1.0"
    newest = text.split(f"## {__version__}", 1)[1].split("\n## ", 1)[0]
    for part in ("### Settings", "### Stored records", "### API"):
        assert part in newest, part
