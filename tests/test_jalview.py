"""What Jalview's Java client needs of the API, without a server: menu classifiers,
presets, parameter descriptions and echoed parameters without null (the bundle test
checks the same through the real proxy for every shipped service)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.classifiers import JALVIEW_OPERATIONS, classifier_warnings, jalview_operation
from appliance.errors import ConfigError
from appliance.forms import FileRef
from appliance.servicefile import parse_service
from appliance.servicefolder import load_service_file
from appliance.submission import echo_parameters
from appliance.web.representations import service_json, shown_parameters
from tests.conftest import ROOT

BASE = {"appliance-version": 1, "name": "T", "image": "x", "command": "t",
        "parameters": {"n": {"name": "N", "type": "integer", "min": 1, "max": 9, "default": 1},
                       "f": {"name": "F", "type": "flag", "default": False},
                       "c": {"name": "C", "type": "choice", "choices": {"A": "a", "B": "b"},
                             "required": False},
                       "s": {"name": "S", "type": "file", "required": False}}}  # fmt: skip


def service_with(**extra: Any) -> Any:
    return parse_service("t", {**BASE, **extra}, "t.service.yaml")


@pytest.mark.parametrize(
    ("classifier", "operation"),
    [
        (JALVIEW_OPERATIONS["multiple sequence alignment"], "multiple sequence alignment"),
        ("Operation::Analysis::Sequence analysis::Protein sequence analysis",
         "protein sequence analysis"),
        ("operation :: analysis :: x :: Pairwise Sequence Alignment", "pairwise sequence alignment"),
        ("Operation : Multiple sequence alignment", None),  # one colon: no menu at all
        ("Operation :: Multiple sequence alignment", None),  # not under Analysis
        ("Operation :: Analysis :: Sequence analysis :: Teleportation", None),
        ("Topic :: Computational biology :: Sequence analysis", None),
    ],
)  # fmt: skip
def test_the_operations_jalview_files_services_under(
    classifier: str, operation: str | None
) -> None:
    assert jalview_operation(classifier) == operation


def test_check_warns_about_an_operation_jalview_would_not_know() -> None:
    good = service_with(classifiers=[JALVIEW_OPERATIONS["multiple sequence alignment"],
                                     "Topic : Anything goes"])  # fmt: skip
    bad = service_with(classifiers=["Operation : Multiple sequence alignment"])
    assert classifier_warnings({"good": good}) == []
    [warning] = classifier_warnings({"bad": bad})
    assert warning.source == "t.service.yaml" and warning.key == "classifiers[0]"
    assert "double colons" in warning.reason


def test_the_shipped_services_are_in_jalviews_menu() -> None:
    for tool in ("clustalo", "mafft", "muscle"):
        service = load_service_file(ROOT / "services" / tool / f"{tool}.service.yaml")
        operations = {jalview_operation(c) for c in service.classifiers} - {None}
        assert operations == {"multiple sequence alignment"}, tool
        outputs = {o.id: o for o in service.outputs}
        assert outputs["alignment"].media_type in ("application/clustal", "application/fasta")
        assert outputs["error-log"].path == "stderr"
        assert outputs["error-log"].name in ("", "error-log")  # the label Jalview looks for
        assert {p.id for p in service.presets} == {"fast", "accurate"}


def test_presets_in_the_old_shape() -> None:
    service = service_with(presets={"quick": {"name": "Quick", "description": "Fast.",
                                              "values": {"n": 2, "f": True, "c": "B"}}})  # fmt: skip
    assert service_json(service, None)["presets"] == [
        {"id": "quick", "name": "Quick", "description": "Fast.", "values": {"n": 2, "f": True, "c": "B"}}]  # fmt: skip


@pytest.mark.parametrize(
    ("presets", "key", "words"),
    [
        ({"q": {"values": {"nope": 1}}}, "presets.q.values.nope", "names no parameter"),
        ({"q": {"values": {"n": 99}}}, "presets.q.values.n", "at most 9"),
        ({"q": {"values": {"c": "Z"}}}, "presets.q.values.c", ""),
        ({"q": {"values": {"s": "x"}}}, "presets.q.values.s", "cannot be preset"),
        ({"q": {"colour": "red"}}, "presets.q.colour", "unknown key"),
        (["q"], "presets", "mapping"),
    ],
)
def test_bad_presets_name_the_key(presets: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        service_with(presets=presets)
    assert info.value.key == key and words in info.value.reason


def test_unset_values_are_left_out_of_the_echo() -> None:
    service = service_with()
    upload = FileRef("abc", Path("/x"), "x")
    assert echo_parameters(service, {"n": 3, "f": False, "c": None, "s": None}) == {"n": "3"}
    assert echo_parameters(service, {"n": 3, "f": True, "c": "A", "s": upload}) == {
        "n": "3", "f": "true", "c": "A", "s": "abc"}  # fmt: skip


def test_records_stored_with_nulls_are_shown_without_them() -> None:
    assert shown_parameters({"a": None, "b": "x", "c": [None, "y"], "d": []}) == {
        "b": "x", "c": ["y"], "d": []}  # fmt: skip


def test_parameter_descriptions_leave_unset_bounds_out() -> None:
    service = parse_service("t", {**BASE, "parameters": {
        "i": {"name": "I", "type": "integer"}, "d": {"name": "D", "type": "decimal", "max": 1},
        "t": {"name": "T", "type": "text"}, "f": {"name": "F", "type": "file"}}}, "t.yaml")  # fmt: skip
    params = {p["id"]: p for p in service_json(service, None)["parameters"]}
    assert not {"min", "max"} & set(params["i"])
    assert (
        params["d"]["max"] == 1 and "min" not in params["d"] and "minExclusive" not in params["d"]
    )
    assert not {"minLength", "maxLength"} & set(params["t"])
    assert not {"mediaType", "mimetype", "mediaTypeParameters", "extensions"} & set(params["f"])
    assert all(
        value is not None for p in params.values() for k, value in p.items() if k != "default"
    )
