"""What a JSON body may hold before it is stored (appliance.web.jsonbody), no service."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.web.jsonbody import MAX_DEPTH, _parse, check


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"a": {"$set": 1}}, "'$set'"),
        ({"tags": {"a.b": "x"}}, "tags.'a.b'"),
        ({"k\x00": 1}, "NUL"),
        ({"n": 2**64}, "n does not fit in 64 bits"),
        ({"fine": [1, "two", None, True, 3.5]}, ""),
    ],
)
def test_what_the_database_could_not_store_is_named(value: Any, words: str) -> None:
    assert words in check(value) if words else check(value) == ""


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def test_depth_is_bounded_before_and_after_parsing() -> None:
    assert check(_nested(MAX_DEPTH)) == ""
    assert "nested more than" in check(_nested(MAX_DEPTH + 1))
    with pytest.raises(ValueError, match="nested more than"):
        _parse(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize("text", [b"NaN", b"-Infinity", b"[Infinity]", b"1e400", b'{"x": -1e999}'])
def test_numbers_json_and_the_database_cannot_hold_are_refused(text: bytes) -> None:
    with pytest.raises(ValueError, match=r"not a number JSON allows|too large"):
        _parse(text)
    assert _parse(b'{"x": 1.5e300}') == {"x": 1.5e300}
