"""The same command lines as the previous system, from its own code.

Each file of ``tests/data/previous/idioms`` (the previous system's form, in the idioms of
its public slivka-bio deployment) is read by both systems, and each case's values go
through both: the previous system's YAML loader, form fields and runner (run by its own
Python, ``tests/previous_argv.py``) and the appliance's loader, validation and
``build_command``. The table of identical and different command lines is printed; every
difference must be a deliberate one listed in DIFFERENCES (and in docs/api.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from appliance.commandline import build_command
from appliance.errors import FormErrors
from appliance.forms import FileRef, RawValue, validate
from appliance.model import ParamType
from appliance.servicefolder import load_service_file
from tests.conftest import ROOT

IDIOMS = ROOT / "tests" / "data" / "previous" / "idioms"
ENVIRON = {"HOME": "/home/slivka", "SLIVKA_HOME": "/srv/slivka", "PATH": "/usr/bin:/bin"}
Case = list[tuple[str, str]]
CASES: dict[str, list[Case]] = {
    "options": [
        [("input", "f")],  # every default
        [("input", "f"), ("anchor", "disable"), ("profile-scoring", "sp"), ("pairwise", "local"),
         ("brenner", "true"), ("dimer", "yes"), ("maxiters", "+7"),
         ("gap-open", "-12"), ("center", "-0.5"), ("hydrofactor", "2"), ("tiny", "1E-7"),
         ("matrix", "pam250"), ("title", "a title with spaces"), ("seed", "0042")],
        [("input", "f"), ("pairwise", "none"), ("profile-scoring", "default"), ("dimer", "0"),
         ("brenner", "off"), ("tiny", "0.1"), ("gap-open", "-1e1"), ("seed", "-3")],
        [("input", "f"), ("center", "5")],  # out of bounds: both refuse
        [("input", "f"), ("matrix", "BLOSUM62")],  # a command-line value, not a choice
        [("anchor", "enable")],  # no input: both refuse
        [("input", "f"), ("sure", "false")],  # a flag whose default is true, turned off
    ],
    "lists": [
        [],
        [("inputs", "a"), ("inputs", "b"), ("method", "shannon"), ("method", "kabat"),
         ("rep", "x"), ("rep", "y z"), ("counts", "1"), ("counts", "20"),
         ("weights", "3"), ("weights", "0.25"), ("words", "one"), ("words", "two")],
        [("method", "none"), ("method", "shannon"), ("rep", "only")],
        [("counts", "1.5")],  # not whole: both refuse
    ],
    "wrapper": [
        [("input", "f")],
        [("input", "f"), ("window", "12")],
    ],
}  # fmt: skip
# (file, case number) -> why the appliance answers differently, on purpose
DIFFERENCES: dict[tuple[str, int], str] = {
    ("options", 6): "false given for a flag whose default is true turns it off (the previous "
    "system reads false as not given and uses the default: the flag stays on)",
}


def previous_argv(name: str, cases: list[Case]) -> list[dict[str, list[str]]]:
    venv = os.environ.get("APPLIANCE_TEST_SLIVKA")
    if not venv:
        pytest.fail("no previous system: run the tests with scripts/test (it installs one)")
    request = {"file": str(IDIOMS / f"{name}.service.yaml"), "id": name, "cases": cases}
    done = subprocess.run(
        [f"{venv}/bin/python", str(ROOT / "tests" / "previous_argv.py")],
        input=json.dumps(request), capture_output=True, text=True, timeout=120,
        env={**ENVIRON, "PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answers: list[dict[str, list[str]]] = json.loads(done.stdout)
    return answers


def appliance_argv(name: str, case: Case) -> dict[str, list[str]]:
    service = load_service_file(IDIOMS / f"{name}.service.yaml")
    raw: dict[str, list[RawValue]] = {}
    for key, value in case:
        param = service.parameters.get(key)
        item: RawValue = value
        if param is not None and param.type is ParamType.FILE:
            item = FileRef(id="a" * 16, path=Path("/dev/null"), label=f"{value}.txt")
        raw.setdefault(key, []).append(item)
    try:
        values = asyncio.run(validate(service, raw))
    except FormErrors as exc:
        return {"errors": sorted(e.parameter for e in exc.errors)}
    plan = build_command(service, values, ENVIRON)
    files = {f.path: f"FILE:{f.parameter}" for f in plan.files}
    return {"argv": [files.get(item, item) for item in plan.argv]}


def test_the_same_command_lines_as_the_previous_systems_own_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows, different = [], []
    for name, cases in CASES.items():
        theirs = previous_argv(name, cases)
        for number, (case, their) in enumerate(zip(cases, theirs, strict=True)):
            ours = appliance_argv(name, case)
            same = ours == their if "argv" in their else ("errors" in ours)
            why = DIFFERENCES.get((name, number))
            rows.append((name, number, "identical" if same else f"DIFFERENT ({why or '?'})"))
            if not same and not why:
                different.append((name, number, case, their, ours))
    with capsys.disabled():
        print("\ncommand lines against the previous system's own code:")
        for name, number, outcome in rows:
            print(f"  {name} case {number}: {outcome}")
        identical = sum(1 for row in rows if row[2] == "identical")
        print(f"  {identical} of {len(rows)} identical")
    assert not different, "\n".join(
        f"{n} case {i} {c}:\n  previous:  {t}\n  appliance: {o}" for n, i, c, t, o in different
    )
