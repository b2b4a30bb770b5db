"""What a service form shows for each parameter: its widget, hint, value and error."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.model import Parameter, ParamType, Service
from appliance.units import format_size

# The names a page's form adds beside a parameter's own: pasted text for a file
# parameter, and a marker saying a flag's checkbox was shown (unchecked sends nothing).
PASTE_SUFFIX = ".text"
FLAG_SUFFIX = ".shown"


@dataclass(frozen=True)
class Field:
    param: Parameter
    widget: str  # number, text, lines, checkbox, select, checkboxes, file
    value: str | list[str]  # what the field shows (a default, or what was sent)
    hint: str  # the constraints, in words
    error: str | None = None
    condition: str | None = None  # the condition's tree as JSON, for the page's script
    example: str | None = None

    @property
    def id(self) -> str:
        return self.param.id

    @property
    def dom_id(self) -> str:
        return "p-" + self.param.id

    @property
    def paste_name(self) -> str:
        return self.param.id + PASTE_SUFFIX

    @property
    def shown_name(self) -> str:
        return self.param.id + FLAG_SUFFIX

    @property
    def checked(self) -> bool:
        return self.value in ("true", ["true"])

    @property
    def required(self) -> bool:
        """Required in the browser too: only when no condition can make it not apply."""
        return self.param.required and self.param.condition is None


def widget_of(param: Parameter) -> str:
    kind = param.type
    if kind is ParamType.FILE:
        return "file"
    if kind is ParamType.CHOICE:
        return "checkboxes" if param.array else "select"
    if param.array:
        return "lines"
    if kind is ParamType.FLAG:
        return "checkbox"
    if kind in (ParamType.INTEGER, ParamType.DECIMAL):
        return "number"
    return "text"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def hint_of(param: Parameter) -> str:
    parts: list[str] = []
    kind = param.type
    if kind in (ParamType.INTEGER, ParamType.DECIMAL):
        parts.append("a whole number" if kind is ParamType.INTEGER else "a number")
        if param.min is not None:
            word = "greater than" if param.min_exclusive else "at least"
            parts.append(f"{word} {_number(param.min)}")
        if param.max is not None:
            word = "less than" if param.max_exclusive else "at most"
            parts.append(f"{word} {_number(param.max)}")
    elif kind is ParamType.TEXT:
        if param.min_length is not None:
            parts.append(f"at least {param.min_length} characters")
        if param.max_length is not None:
            parts.append(f"at most {param.max_length} characters")
    elif kind is ParamType.FILE:
        if param.media_type:
            parts.append(param.media_type)
        if param.extensions:
            parts.append(", ".join(param.extensions))
        if param.max_size is not None:
            parts.append(f"up to {format_size(param.max_size)}")
        parts.append("upload a file or paste its text")
    if param.array and kind not in (ParamType.FILE, ParamType.CHOICE):
        parts.append("one value per line")
    if param.array and kind is ParamType.FILE:
        parts.append("several files allowed")
    if param.condition is not None:
        parts.append(f"applies when {param.condition.text}")
    return "; ".join(parts)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    return "" if value is None else str(value)


def initial_value(param: Parameter, sent: Sequence[str] | None) -> str | list[str]:
    """What a field holds: the values sent (a form shown again), else the default."""
    if sent is not None:
        values = list(sent)
    elif param.default is None:
        values = []
    elif isinstance(param.default, list):
        values = [_shown(v) for v in param.default]
    else:
        values = [_shown(param.default)]
    if param.array:
        return values
    return values[-1] if values else ""


def fields_of(
    service: Service,
    sent: Mapping[str, Sequence[str]] | None = None,
    errors: Mapping[str, str] | None = None,
    preset: Mapping[str, Any] | None = None,
) -> list[Field]:
    """The form's fields in the service file's order; ``sent`` are the values of a form
    shown again with its ``errors`` (by parameter id); a ``preset``'s values replace the
    defaults of a fresh form."""
    fields = []
    for param in service.parameters.values():
        if sent is None and preset and param.id in preset:
            param = dataclasses.replace(param, default=preset[param.id])
        own: Sequence[str] | None = None
        if sent is not None:
            own = list(sent.get(param.id, ()))
            if param.type is ParamType.FLAG and not own and param.id + FLAG_SUFFIX in sent:
                own = ["false"]
            if param.array and widget_of(param) == "lines":
                own = [line for text in own for line in text.splitlines() if line.strip()]
            if param.type is ParamType.FILE:
                own = list(sent.get(param.id + PASTE_SUFFIX, ()))
        value = initial_value(param, own)
        if param.type is ParamType.FILE:  # the paste box's text; a file must be chosen again
            value = "".join(own or [])
        condition = param.condition
        fields.append(Field(
            param, widget_of(param), value, hint_of(param), (errors or {}).get(param.id),
            json.dumps(condition.as_json()) if condition is not None else None,
            param.example,
        ))  # fmt: skip
    return fields
