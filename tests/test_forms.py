from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import FormErrors
from appliance.filerefs import StoreFileLookup
from appliance.forms import FileRef, RawValue, validate
from appliance.model import Service
from appliance.servicefile import parse_service
from appliance.servicefolder import load_service_file
from appliance.store import Store, new_id, utcnow
from tests.conftest import DATA

pytestmark = pytest.mark.anyio

EVERYTHING = load_service_file(DATA / "services" / "valid" / "everything-legacy.service.yaml")
FASTA = ">a\nMKV\n>b\nMKKV\n"


def service(parameters: dict[str, Any], args: dict[str, Any] | None = None) -> Service:
    return parse_service(
        "t",
        {"appliance-version": 1, "name": "T", "command": "tool", "image": "x",
         "parameters": parameters, "args": args or {}},
    )  # fmt: skip


async def errors_of(
    svc: Service, raw: dict[str, list[RawValue]], lookup: Any = None
) -> dict[str, str]:
    with pytest.raises(FormErrors) as info:
        await validate(svc, raw, lookup)
    return {e.parameter: e.code for e in info.value.errors}


async def test_defaults_fill_in() -> None:
    values = await validate(EVERYTHING, {})
    assert values["count"] == 3
    assert values["mode"] == "Fast"
    assert values["verbose"] is False
    assert values["ratio"] is None
    assert values["names"] is None


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("count", "7", 7),
        ("count", " +7 ", 7),
        ("ratio", "0.5", 0.5),
        ("ratio", "1", 1.0),
        ("label", "abc", "abc"),
        ("verbose", "yes", True),
        ("verbose", "False", False),
        ("verbose", "1", True),
        ("mode", "Slow", "Slow"),
        ("limit", "9", None),  # condition fails (verbose false): an error, see below
    ],
)
async def test_each_type_converts(name: str, raw: str, expected: Any) -> None:
    if name == "limit":
        assert await errors_of(EVERYTHING, {name: [raw]}) == {"limit": "condition"}
        return
    values = await validate(EVERYTHING, {name: [raw]})
    assert values[name] == expected


@pytest.mark.parametrize(
    ("name", "raw", "code"),
    [
        ("count", "0", "min_value"),
        ("count", "11", "max_value"),
        ("count", "1.5", "invalid"),
        ("count", "ten", "invalid"),
        ("count", "1e3", "invalid"),
        ("ratio", "0", "min_value"),  # min-exclusive
        ("ratio", "1.01", "max_value"),
        ("ratio", "nan", "invalid"),
        ("ratio", "inf", "invalid"),
        ("ratio", "x", "invalid"),
        ("label", "a", "min_length"),
        ("label", "abcdefghi", "max_length"),
        ("label", "a\x00b", "invalid"),
        ("verbose", "maybe", "invalid"),
        ("mode", "--fast", "invalid"),  # the displayed key is the value, not the flag
        ("mode", "Medium", "invalid"),
        ("scores", "101", "max_value"),
        ("nosuch", "1", "unexpected"),
    ],
)
async def test_each_constraint_rejects(name: str, raw: str, code: str) -> None:
    assert await errors_of(EVERYTHING, {name: [raw]}) == {name: code}


async def test_several_errors_are_reported_together() -> None:
    errors = await errors_of(EVERYTHING, {"count": ["0"], "label": ["x"], "mode": ["?"]})
    assert errors == {"count": "min_value", "label": "min_length", "mode": "invalid"}


async def test_arrays() -> None:
    values = await validate(EVERYTHING, {"names": ["a", "b"], "scores": ["1", "2", "3"]})
    assert values["names"] == ["a", "b"]
    assert values["scores"] == [1, 2, 3]
    assert await errors_of(EVERYTHING, {"count": ["1", "2"]}) == {"count": "invalid"}


async def test_empty_strings_count_as_missing() -> None:
    values = await validate(EVERYTHING, {"count": [""], "names": ["", ""]})
    assert values["count"] == 3
    assert values["names"] is None


async def test_required() -> None:
    svc = service({"x": {"name": "X", "type": "integer"}, "y": {"name": "Y", "type": "text[]"}})
    assert await errors_of(svc, {}) == {"x": "required", "y": "required"}


async def test_conditions() -> None:
    assert (await validate(EVERYTHING, {"verbose": ["yes"], "limit": ["5"]}))["limit"] == 5
    assert await errors_of(EVERYTHING, {"verbose": ["yes"], "limit": ["2"]}) == {
        "limit": "condition"
    }
    # A default that fails its condition is dropped, not an error.
    svc = service({
        "a": {"name": "A", "type": "flag", "default": False},
        "b": {"name": "B", "type": "integer", "default": 3, "condition": "a"},
    })  # fmt: skip
    assert (await validate(svc, {}))["b"] is None
    assert (await validate(svc, {"a": ["true"]}))["b"] == 3


async def test_required_only_when_its_condition_holds() -> None:
    svc = service({
        "mode": {"name": "M", "type": "choice", "choices": {"a": "a", "b": "b"}, "default": "a"},
        "x": {"name": "X", "type": "integer", "condition": "mode == \"b\""},
    })  # fmt: skip
    assert (await validate(svc, {}))["x"] is None
    assert await errors_of(svc, {"mode": ["b"]}) == {"x": "required"}


async def test_option_like_text_is_refused_where_it_stands_alone() -> None:
    svc = service(
        {"q": {"name": "Q", "type": "text"}, "r": {"name": "R", "type": "text", "required": False}},
        {"q": {"arg": "$(value)"}, "r": {"arg": "--r=$(value)"}},
    )
    assert await errors_of(svc, {"q": ["-rf"]}) == {"q": "invalid"}
    values = await validate(svc, {"q": ["x"], "r": ["-rf"]})  # inside --r=... it is harmless
    assert values["r"] == "-rf"


async def test_negative_numbers_are_fine_standing_alone() -> None:
    svc = service({"n": {"name": "N", "type": "integer"}}, {"n": {"arg": "$(value)"}})
    assert (await validate(svc, {"n": ["-5"]}))["n"] == -5


def _file_service(**extra: Any) -> Service:
    return service({"f": {"name": "F", "type": "file", "media-type": "application/fasta", **extra}})


async def test_file_on_disk(tmp_path: Path) -> None:
    good = tmp_path / "good.fa"
    good.write_text(FASTA)
    bad = tmp_path / "bad.fa"
    bad.write_text("not fasta")
    svc = _file_service(**{"max-size": "10"})
    assert await errors_of(svc, {"f": [FileRef("g", good, "good.fa")]}) == {"f": "max_length"}
    svc = _file_service()
    values = await validate(svc, {"f": [FileRef("g", good, "good.fa")]})
    assert values["f"].path == good
    assert await errors_of(svc, {"f": [FileRef("b", bad, "bad.fa")]}) == {"f": "media_type"}
    missing = FileRef("m", tmp_path / "missing", "m")
    assert await errors_of(svc, {"f": [missing]}) == {"f": "not_found"}
    assert await errors_of(svc, {"f": ["someid"]}) == {"f": "file_id"}  # not an id of ours
    assert await errors_of(svc, {"f": [new_id()]}) == {"f": "not_found"}  # no lookup


async def test_file_ids_through_real_mongodb_records(store: Store, tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    jobs = tmp_path / "jobs"
    uploads.mkdir()
    fid = new_id()
    (uploads / fid).write_text(FASTA)
    await store.insert_file(
        {
            "_id": fid,
            "path": fid,
            "label": "mine.fa",
            "media_type": "application/fasta",
            "created_at": utcnow(),
        }
    )
    job_id = new_id()
    (jobs / job_id).mkdir(parents=True)
    (jobs / job_id / "alignment.fa").write_text(FASTA)
    (jobs / job_id / "unrecorded.fa").write_text(FASTA)
    await store.insert_job(
        {
            "_id": job_id,
            "service": "t",
            "state": "COMPLETED",
            "submitted_at": utcnow(),
            "outputs": [
                {"id": "a", "path": "alignment.fa", "media_type": "application/fasta", "name": ""}
            ],
        }
    )
    lookup = StoreFileLookup(store, uploads, jobs)
    svc = _file_service()
    values = await validate(svc, {"f": [fid]}, lookup)
    assert values["f"].label == "mine.fa"
    assert values["f"].path == (uploads / fid).resolve()
    values = await validate(svc, {"f": [f"{job_id}/alignment.fa"]}, lookup)
    assert values["f"].path == (jobs / job_id / "alignment.fa").resolve()
    for hostile in [
        new_id(),
        f"{job_id}/unrecorded.fa",
        f"{job_id}/../../etc/passwd",
        f"{job_id}/../{job_id}/alignment.fa",
        "../../etc/hostname",
        "/etc/passwd",
        f"{new_id()}/alignment.fa",
        "x" * 5000,
        "",
    ]:
        if hostile == "":
            assert await errors_of(svc, {"f": [hostile]}, lookup) == {"f": "required"}
        else:  # an id of ours that names nothing, or no id at all (the old codes)
            expected = "not_found" if re.match(r"^[a-z2-7]{16}(/|$)", hostile) else "file_id"
            assert await errors_of(svc, {"f": [hostile]}, lookup) == {"f": expected}, hostile


async def test_symlinked_upload_that_leaves_the_folder_is_refused(
    store: Store, tmp_path: Path
) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    outside = tmp_path / "secret.fa"
    outside.write_text(FASTA)
    fid = new_id()
    (uploads / fid).symlink_to(outside)
    await store.insert_file({"_id": fid, "path": fid, "label": "x", "created_at": utcnow()})
    lookup = StoreFileLookup(store, uploads, tmp_path / "jobs")
    assert await errors_of(_file_service(), {"f": [fid]}, lookup) == {"f": "not_found"}


async def test_a_string_for_a_file_and_a_file_for_a_string(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_text("x")
    svc = service({"t": {"name": "T", "type": "text"}})
    assert await errors_of(svc, {"t": [FileRef("x", path, "x")]}) == {"t": "invalid"}
