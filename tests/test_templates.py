from __future__ import annotations

import pytest

from appliance.errors import CommandError, ConfigError
from appliance.templates import Env, Slot, expand_env_value, parse_item, parse_template


def test_segments() -> None:
    item = parse_item("--in=$(value):${HOME}/$USER$$x", value_slots=True)
    assert item.segments == ("--in=", Slot(), ":", Env("HOME"), "/", Env("USER"), "$x")
    assert item.env_names == ("HOME", "USER")


@pytest.mark.parametrize("text", ["$(value)", "${value}", "$value"])
def test_value_placeholders(text: str) -> None:
    item = parse_item(text, value_slots=True)
    assert item.is_bare_slot
    assert item.render("x y") == "x y"


def test_value_is_an_env_variable_outside_args() -> None:
    assert parse_item("${value}", value_slots=False).segments == (Env("value"),)
    assert parse_item("$(value)", value_slots=False).segments == ("$(value)",)


def test_other_dollar_forms_stay_literal() -> None:
    assert parse_item("$(id) $ 5$ $1", value_slots=True).render() == "$(id) $ 5$ $1"


def test_split_once_then_substitute() -> None:
    items = parse_template("tool --opt='a b' $(value)", value_slots=True)
    assert [i.render("v") for i in items] == ["tool", "--opt=a b", "v"]


def test_list_templates_are_not_split() -> None:
    items = parse_template(["a b", "${X}"], value_slots=False)
    assert len(items) == 2
    assert [i.resolve_env({"X": "1 2"}).render() for i in items] == ["a b", "1 2"]


def test_env_values_are_literal_and_never_rescanned() -> None:
    item = parse_item("--x=${A}$(value)", value_slots=True)
    resolved = item.resolve_env({"A": "$(value)${B}"})
    assert resolved.render("V") == "--x=$(value)${B}V"


def test_values_are_never_expanded() -> None:
    item = parse_item("--x=$(value)", value_slots=True).resolve_env({})
    for hostile in ["${HOME}", "$(id)", "`id`", "; rm -rf /", "a\nb", "$HOME"]:
        assert item.render(hostile) == "--x=" + hostile


def test_missing_env_variable() -> None:
    with pytest.raises(CommandError, match="NOPE is not set"):
        parse_item("${NOPE}", value_slots=False).resolve_env({})


@pytest.mark.parametrize("text", ["${HOME", "${1X}", "${}", "${A B}"])
def test_bad_placeholders(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_item(text, value_slots=False)


def test_unbalanced_quotes() -> None:
    with pytest.raises(ConfigError, match="cannot split"):
        parse_template("tool 'oops", value_slots=False)


def test_expand_env_value() -> None:
    assert expand_env_value("${HOME}/x:$PATH", {"HOME": "/h", "PATH": "/bin"}) == "/h/x:/bin"


def test_str_round_trip() -> None:
    item = parse_item("a$$b${C}$(value)", value_slots=True)
    assert str(item) == "a$$b${C}$(value)"
    assert parse_item(str(item), value_slots=True) == item
