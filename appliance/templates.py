"""Placeholders in command templates.

A template is split into argv items once, like a shell would, *before* anything is
substituted. Each item is then parsed into segments:

- ``${NAME}`` / ``$NAME``: an environment variable, substituted first (``resolve_env``);
- ``$(value)``, ``${value}``, ``$value``: the parameter's value (in ``args`` only),
  substituted last (``render``) and never scanned again, so a value cannot expand,
  split or inject anything: it always lands inside its one argv item;
- ``$$``: a literal ``$``. Any other ``$`` is kept as it is (``$(id)`` stays literal).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from appliance.errors import CommandError, ConfigError

VALUE = "value"

_TOKEN = re.compile(
    r"\$\$"  # escaped dollar
    r"|\$\(value\)"  # the previous system's value placeholder
    r"|\$\{(?P<braced>[^}]*)\}"  # ${NAME}
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"  # $NAME
    r"|\$\{"  # an unterminated ${
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Env:
    name: str


@dataclass(frozen=True)
class Slot:
    """Where the parameter's value goes."""


Segment = str | Env | Slot


@dataclass(frozen=True)
class ArgTemplate:
    """One argv item of a template, as literal text, environment variables and value slots."""

    segments: tuple[Segment, ...]

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments if isinstance(s, Env))

    @property
    def has_slot(self) -> bool:
        return any(isinstance(s, Slot) for s in self.segments)

    @property
    def is_bare_slot(self) -> bool:
        """True when the value alone makes up the argv item (so ``-x`` would read as an option)."""
        return self.segments == (Slot(),)

    def resolve_env(self, environ: Mapping[str, str]) -> ArgTemplate:
        resolved: list[Segment] = []
        for segment in self.segments:
            if isinstance(segment, Env):
                if segment.name not in environ:
                    raise CommandError(f"environment variable {segment.name} is not set")
                resolved.append(environ[segment.name])
            else:
                resolved.append(segment)
        return ArgTemplate(_merge(resolved))

    def render(self, value: str = "") -> str:
        parts: list[str] = []
        for segment in self.segments:
            if isinstance(segment, Env):
                raise CommandError(f"environment variable {segment.name} was not substituted")
            parts.append(value if isinstance(segment, Slot) else segment)
        return "".join(parts)

    def __str__(self) -> str:
        parts = []
        for segment in self.segments:
            if isinstance(segment, Env):
                parts.append("${" + segment.name + "}")
            elif isinstance(segment, Slot):
                parts.append("$(value)")
            else:
                parts.append(segment.replace("$", "$$"))
        return "".join(parts)


def _merge(segments: list[Segment]) -> tuple[Segment, ...]:
    merged: list[Segment] = []
    for segment in segments:
        if isinstance(segment, str) and merged and isinstance(merged[-1], str):
            merged[-1] += segment
        elif segment != "":
            merged.append(segment)
    return tuple(merged)


def parse_item(text: str, *, value_slots: bool) -> ArgTemplate:
    """Parse one argv item. With ``value_slots`` false, ``${value}`` is an environment variable."""
    segments: list[Segment] = []
    position = 0
    for match in _TOKEN.finditer(text):
        segments.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        name = match.group("braced") if match.group("braced") is not None else match.group("bare")
        if token == "$$":
            segments.append("$")
        elif token == "$(value)":
            segments.append(Slot() if value_slots else token)
        elif token == "${":
            raise ConfigError(f"unterminated '${{' in {text!r}")
        elif name is not None and not _NAME.match(name):
            raise ConfigError(f"{'${' + name + '}'!r} is not a valid variable name in {text!r}")
        elif name == VALUE and value_slots:
            segments.append(Slot())
        else:
            segments.append(Env(str(name)))
    segments.append(text[position:])
    return ArgTemplate(_merge(segments))


def split_template(text: str) -> list[str]:
    """Split a command or argument template into argv items, the way a shell would."""
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise ConfigError(f"cannot split {text!r} into arguments: {exc}") from None


def parse_template(source: str | list[str], *, value_slots: bool) -> tuple[ArgTemplate, ...]:
    """A string is split like a shell would; a list is taken item by item, unsplit."""
    items = split_template(source) if isinstance(source, str) else [str(i) for i in source]
    return tuple(parse_item(item, value_slots=value_slots) for item in items)


def expand_env_value(text: str, environ: Mapping[str, str]) -> str:
    """Substitute environment variables into a service's ``env`` value (no value slots)."""
    return parse_item(text, value_slots=False).resolve_env(environ).render()
