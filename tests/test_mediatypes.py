from __future__ import annotations

from pathlib import Path

import pytest

from appliance.mediatypes import SNIFF_BYTES, check_file, sniff_media_type

FASTA = ">sp|P1|one protein\nMKVLAAGIVG\nLLLA*\n>two\nMKV-LA\n"
CLUSTAL = "CLUSTAL O(1.2.4) multiple sequence alignment\n\n\none      MKVLA\ntwo      MKV-A\n"


def write(tmp_path: Path, content: str | bytes, name: str = "f") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize(
    ("media_type", "content", "ok"),
    [
        ("application/fasta", FASTA, True),
        ("application/fasta", "\n\n" + FASTA, True),
        ("application/fasta", "MKV\n", False),
        ("application/fasta", ">only header\n", False),
        ("application/fasta", ">x\nMK1V\n", False),
        ("application/fasta", "", False),
        ("application/fasta", b">x\nMK\x00V\n", False),
        ("text/x-fasta", FASTA, True),
        ("application/clustal", CLUSTAL, True),
        ("application/clustal", FASTA, False),
        ("text/plain", "any text\u00e9", True),
        ("text/plain", b"\xff\xfe\x00", False),
        ("application/json", '{"a": [1, 2]}', True),
        ("application/json", "{'a': 1}", False),
        ("application/octet-stream", b"\x00\x01", True),  # no checker: accepted
        ("application/fasta; charset=utf-8", FASTA, True),
    ],
)
def test_check_file(tmp_path: Path, media_type: str, content: str | bytes, ok: bool) -> None:
    problem = check_file(write(tmp_path, content), media_type)
    assert (problem is None) is ok, problem


def test_large_fasta_is_checked_by_its_head_only(tmp_path: Path) -> None:
    line = "ACGT" * 20 + "\n"
    body = ">big\n" + line * (2 * SNIFF_BYTES // len(line))
    assert check_file(write(tmp_path, body + "!!!bad tail\n"), "application/fasta") is None
    assert check_file(write(tmp_path, "x" + body, "g"), "application/fasta") is not None


def test_multibyte_character_cut_by_the_window(tmp_path: Path) -> None:
    text = "a" * (SNIFF_BYTES - 1) + "\u00e9" * 10
    assert check_file(write(tmp_path, text), "text/plain") is None


def test_sniff(tmp_path: Path) -> None:
    assert sniff_media_type(write(tmp_path, FASTA)) == "application/fasta"
    assert sniff_media_type(write(tmp_path, CLUSTAL, "c")) == "application/clustal"
    assert sniff_media_type(write(tmp_path, "[1]", "j")) == "application/json"
    assert sniff_media_type(write(tmp_path, "hello", "t")) == "text/plain"
    assert sniff_media_type(write(tmp_path, b"\x00\xff", "b")) == "application/octet-stream"
