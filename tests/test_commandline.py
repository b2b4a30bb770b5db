from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.commandline import build_command
from appliance.errors import CommandError
from appliance.forms import FileRef, validate
from appliance.model import Service
from appliance.servicefile import parse_service
from appliance.servicefolder import load_service_file
from tests.conftest import DATA

pytestmark = pytest.mark.anyio

VALID = DATA / "services" / "valid"
LEGACY = load_service_file(VALID / "clustalo-legacy.service.yaml")
EVERYTHING = load_service_file(VALID / "everything-legacy.service.yaml")
ECHO = load_service_file(VALID / "native-echo.service.yaml")
ENV = {"HOME": "/home/u", "USER": "u", "PATH": "/usr/bin"}
HOSTILE = ["; rm -rf /", "$(id)", "${HOME}", "`id`", "a\nb", "$HOME", "' \"", "&& true", "|", "*"]


def native(args: dict[str, Any], parameters: dict[str, Any] | None = None, **extra: Any) -> Service:
    data = {"appliance-version": 1, "name": "N", "image": "x", "command": "tool",
            "parameters": parameters or {"v": {"name": "V", "type": "text"}}, "args": args,
            **extra}  # fmt: skip
    return parse_service("n", data)


def ref(tmp_path: Path, label: str = "seqs.fa", file_id: str = "abc") -> FileRef:
    path = tmp_path / file_id
    path.write_text(">a\nMK\n")
    return FileRef(file_id, path, label)


async def test_the_previous_systems_example_gives_exactly_its_argv(tmp_path: Path) -> None:
    values = await validate(
        LEGACY, {"input": [ref(tmp_path)], "iterations": ["3"], "dealign": ["yes"]}
    )
    plan = build_command(LEGACY, values, ENV)
    assert plan.argv == (
        "clustalo", "--infile=input.fa", "--iter=3", "--dealign", "--outfile=alignment.aln",
    )  # fmt: skip
    assert [(f.parameter, f.path) for f in plan.files] == [("input", "input.fa")]
    assert plan.files[0].source.path == tmp_path / "abc"
    # what the previous system gave each command: its project folder, here in the image
    assert plan.env == {"SLIVKA_HOME": "/srv/slivka"}
    assert build_command(LEGACY, values, {**ENV, "SLIVKA_HOME": "/p"}).env == {"SLIVKA_HOME": "/p"}
    assert "SLIVKA_HOME" not in build_command(ECHO, await validate(ECHO, {}), ENV).env  # native


async def test_defaults_constants_flags_and_absent_values(tmp_path: Path) -> None:
    values = await validate(LEGACY, {"input": [ref(tmp_path)]})
    plan = build_command(LEGACY, values, ENV)
    # iterations takes its default 1; dealign (false) and nothing absent is on the line.
    assert plan.argv == ("clustalo", "--infile=input.fa", "--iter=1", "--outfile=alignment.aln")


async def test_every_feature(tmp_path: Path) -> None:
    values = await validate(
        EVERYTHING,
        {
            "mode": ["Slow"],
            "ratio": ["0.25"],
            "label": ["ab cd"],
            "verbose": ["true"],
            "names": ["x", "y z"],
            "scores": ["1", "2"],
            "limit": ["9"],
            "seqs": [ref(tmp_path, "one.fa", "f1"), ref(tmp_path, "two.fa", "f2")],
        },
    )
    plan = build_command(EVERYTHING, values, ENV, EVERYTHING.runners["default"])
    assert plan.argv == (
        "tool", "--base",
        "--slow",  # the choice's value, not its key
        "-n", "3",  # "-n $(value)" is split into two items before substitution
        "--ratio=0.25",
        "--label=ab cd",
        "-v",
        "--name", "x", "--name", "y z",  # an array repeats the template per value
        "--scores=1,2",  # ... unless it has join
        "--limit", "9",
        "seq0.fa", "seq1.fa",  # symlink with %d
        "--home=/home/u/data",  # environment substituted in a constant argument
    )  # fmt: skip
    assert plan.env == {"SLIVKA_HOME": "/srv/slivka", "TOOL_HOME": "/home/u/tool",
                        "GREETING": "hello", "EXTRA": "1"}  # fmt: skip
    assert [f.path for f in plan.files] == ["seq0.fa", "seq1.fa"]


async def test_runner_constants_override_values() -> None:
    values = await validate(EVERYTHING, {"count": ["2"]})
    plan = build_command(EVERYTHING, values, ENV, EVERYTHING.runners["cluster"])
    assert plan.argv[plan.argv.index("-n") + 1] == "7"


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_values_stay_literal_single_items(hostile: str) -> None:
    service = native({"v": {"arg": "--v=$(value)"}})
    plan = build_command(service, await validate(service, {"v": [hostile]}), ENV)
    assert plan.argv == ("tool", "--v=" + hostile)
    service = native({"v": {"arg": "-v $(value)"}})
    plan = build_command(service, await validate(service, {"v": [hostile]}), ENV)
    assert plan.argv == ("tool", "-v", hostile)


async def test_env_is_substituted_before_values_and_values_never_expand() -> None:
    service = native(
        {"v": {"arg": "--v=${SECRET}:${value}"}},
        env={"SECRET": "from-env"},
        command="tool ${HOME}",
    )
    plan = build_command(service, await validate(service, {"v": ["${HOME}$(value)"]}), ENV)
    assert plan.argv == ("tool", "/home/u", "--v=from-env:${HOME}$(value)")


async def test_environment_values_are_never_split() -> None:
    service = native({}, command="tool ${SPACEY}", parameters={})
    plan = build_command(service, {}, {"SPACEY": "a b; c"})
    assert plan.argv == ("tool", "a b; c")


async def test_unset_environment_variable_is_a_clear_error() -> None:
    service = native({}, command="tool ${MISSING_VAR}", parameters={})
    with pytest.raises(CommandError, match="MISSING_VAR is not set"):
        build_command(service, {}, ENV)


async def test_option_like_text_standing_alone_is_refused_by_the_builder_too() -> None:
    service = native({"v": {"arg": "$(value)"}})
    with pytest.raises(CommandError, match="would be read as an option"):
        build_command(service, {"v": "-rf"}, ENV)
    plan = build_command(native({"v": {"arg": "-- $(value)"}}), {"v": "-rf"}, ENV)
    assert plan.argv == ("tool", "--", "-rf")


async def test_native_list_arg_and_symlink_names_from_user_file_names(tmp_path: Path) -> None:
    values = await validate(
        ECHO,
        {
            "message": ["-hi; $(id)"],
            "inputs": [ref(tmp_path, "../../etc/pass wd.txt", "a1"), ref(tmp_path, "", "b2")],
        },
    )
    plan = build_command(ECHO, values, ENV)
    assert plan.argv == (
        "echo", "[u]", "--", "-hi; $(id)", "in-pass_wd-0.txt", "in-b2-1",
    )  # fmt: skip
    assert plan.env == {"PREFIX": "[u]"}


async def test_files_without_symlink_are_staged_under_inputs(tmp_path: Path) -> None:
    service = native(
        {"f": {"arg": "--in $(value)"}, "g": {"arg": "$(value)"}},
        {"f": {"name": "F", "type": "file"}, "g": {"name": "G", "type": "file[]"}},
    )
    values = {"f": ref(tmp_path), "g": [ref(tmp_path, "a", "x"), ref(tmp_path, "b", "y")]}
    plan = build_command(service, values, ENV)
    assert plan.argv == ("tool", "--in", "inputs/f", "inputs/g.0", "inputs/g.1")


async def test_clashing_staged_names(tmp_path: Path) -> None:
    service = native(
        {
            "f": {"arg": "$(value)", "symlink": "in.fa"},
            "g": {"arg": "$(value)", "symlink": "in.fa"},
        },
        {"f": {"name": "F", "type": "file"}, "g": {"name": "G", "type": "file"}},
    )
    with pytest.raises(CommandError, match="both be staged"):
        build_command(service, {"f": ref(tmp_path), "g": ref(tmp_path, "x", "y")}, ENV)


async def test_decimals_and_integers_print_plainly() -> None:
    service = native(
        {"d": {"arg": "$(value)"}, "i": {"arg": "$(value)"}},
        {"d": {"name": "D", "type": "decimal"}, "i": {"name": "I", "type": "integer"}},
    )
    plan = build_command(service, await validate(service, {"d": ["0.1"], "i": ["-3"]}), ENV)
    assert plan.argv == ("tool", "0.1", "-3")
