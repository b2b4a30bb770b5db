from __future__ import annotations

from typing import Any

import pytest

from appliance.conditions import Condition
from appliance.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "own", "values", "expected"),
    [
        ("self > 3", 4, {}, True),
        ("self > 3", 3, {}, False),
        ("self >= 3 and self <= 5", 5, {}, True),
        ("a or b", None, {"a": False, "b": True}, True),
        ("a xor b", None, {"a": True, "b": True}, False),
        ("not a", None, {"a": False}, True),
        ('a == "x y"', None, {"a": "x y"}, True),
        ("a != null", None, {"a": None}, False),
        ("#self > 2", ["a", "b", "c"], {}, True),
        ("#self == 0", None, {}, True),
        ("a + b * 2 == 7", None, {"a": 1, "b": 3}, True),
        ("(a + b) * 2 == 8", None, {"a": 1, "b": 3}, True),
        ("-a < 0", None, {"a": 2}, True),
        ("a / 0 == null", None, {"a": 1}, True),
        ("self > other", 1, {"other": None}, False),  # missing values never raise
        ("x-y > 1", None, {"x-y": 2}, True),  # ids may contain '-'
        ("a == true", None, {"a": True}, True),
        ("1.5e1 == 15", None, {}, True),
        ("a and b or c", None, {"a": False, "b": True, "c": True}, True),
        ("self > 'x'", 1, {}, None),
    ],
)
def test_evaluate(text: str, own: Any, values: dict[str, Any], expected: bool | None) -> None:
    if expected is None:
        with pytest.raises(ConfigError):
            Condition.parse(text)
        return
    assert Condition.parse(text).evaluate(own, values) is expected


def test_names() -> None:
    assert Condition.parse("self > a and not b").names == {"self", "a", "b"}


@pytest.mark.parametrize("text", ["", "a >", "(a", "a b", "a == ==", "a )"])
def test_syntax_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        Condition.parse(text)


def test_comparing_unlike_types_is_false() -> None:
    assert Condition.parse("self > 3").evaluate("text", {}) is False
