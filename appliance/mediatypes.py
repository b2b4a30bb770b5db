"""Checks that a file's content is what its media type says.

Only the start of the file is read (``SNIFF_BYTES``), so a check costs the same for a
1 KB and a 1 GB upload. Media types without a checker are accepted as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

SNIFF_BYTES = 256 * 1024

_SEQUENCE_LINE = re.compile(r"^[A-Za-z*\-.\s]*$")
_CLUSTAL_HEADERS = ("CLUSTAL", "MUSCLE", "PROBCONS", "MSAPROBS", "T-COFFEE")


def _text(head: bytes, complete: bool) -> str | None:
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sniff window is not an error.
        if not complete and exc.start >= len(head) - 4:
            return head[: exc.start].decode("utf-8", errors="strict")
        return None


def _lines(text: str, complete: bool) -> list[str]:
    lines = text.splitlines()
    if not complete and lines:
        lines.pop()  # possibly cut in the middle
    return lines


def check_plain_text(head: bytes, complete: bool) -> str | None:
    if _text(head, complete) is None:
        return "is not UTF-8 text"
    return None


def check_fasta(head: bytes, complete: bool) -> str | None:
    text = _text(head, complete)
    if text is None:
        return "is not FASTA: not UTF-8 text"
    lines = [line for line in _lines(text, complete) if line.strip()]
    if not lines:
        return "is not FASTA: the file is empty"
    if not lines[0].startswith(">"):
        return "is not FASTA: the first line must start with '>'"
    for number, line in enumerate(lines, start=1):
        if line.startswith((">", ";")):
            continue
        if not _SEQUENCE_LINE.match(line):
            return f"is not FASTA: line {number} has characters that are not residues"
    if complete and all(line.startswith(">") for line in lines):
        return "is not FASTA: no sequence follows the header"
    return None


def check_clustal(head: bytes, complete: bool) -> str | None:
    text = _text(head, complete)
    if text is None:
        return "is not a Clustal alignment: not UTF-8 text"
    lines = _lines(text, complete)
    first = next((line for line in lines if line.strip()), "")
    if not first.startswith(_CLUSTAL_HEADERS):
        return "is not a Clustal alignment: the first line must start with CLUSTAL"
    return None


def check_json(head: bytes, complete: bool) -> str | None:
    text = _text(head, complete)
    if text is None:
        return "is not JSON: not UTF-8 text"
    if not complete:
        stripped = text.lstrip()
        return None if stripped[:1] in ("{", "[") else "is not JSON"
    try:
        json.loads(text)
    except ValueError as exc:
        return f"is not JSON: {exc}"
    return None


CHECKERS: dict[str, Callable[[bytes, bool], str | None]] = {
    "text/plain": check_plain_text,
    "application/fasta": check_fasta,
    "text/x-fasta": check_fasta,
    "application/x-fasta": check_fasta,
    "application/clustal": check_clustal,
    "application/x-clustal": check_clustal,
    "application/json": check_json,
}


def base_type(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip().lower()


def is_checked(media_type: str) -> bool:
    return base_type(media_type) in CHECKERS


def check_file(path: Path, media_type: str) -> str | None:
    """None when ``path`` looks like ``media_type``; else what is wrong with it."""
    checker = CHECKERS.get(base_type(media_type))
    if checker is None:
        return None
    with path.open("rb") as stream:
        head = stream.read(SNIFF_BYTES + 1)
    complete = len(head) <= SNIFF_BYTES
    return checker(head[:SNIFF_BYTES], complete)


def sniff_media_type(path: Path) -> str:
    """The most specific checked media type the file's content fits (for labelling uploads)."""
    for media_type in ("application/fasta", "application/clustal", "application/json"):
        if check_file(path, media_type) is None:
            return media_type
    if check_file(path, "text/plain") is None:
        return "text/plain"
    return "application/octet-stream"
