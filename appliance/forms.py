"""Validation of submitted values against a service's parameters (the form layer).

Raw values come as lists of strings (form fields) or FileRefs (uploaded parts); the
result maps every parameter id to a typed value: int, float, str, bool, FileRef, a list
of those for arrays, or None. Errors carry the previous system's error codes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import FormErrors, ValidationError
from appliance.mediatypes import check_file
from appliance.model import Parameter, ParamType, Service
from appliance.plan import Location


@dataclass(frozen=True)
class FileRef:
    """A file that a job can take as input: an upload, an earlier job's output, a local file.

    ``path`` is where this process reads it (to check its contents); ``location`` is where
    it is on the appliance's volumes (what a job's plan records), None for a local file.
    """

    id: str
    path: Path
    label: str = ""
    media_type: str = ""
    location: Location | None = None


RawValue = str | FileRef
FileLookup = Callable[[str], Awaitable[FileRef | None]]

_INTEGER = re.compile(r"^[+-]?\d+$")
ID = re.compile(r"^[a-z2-7]{16}$")  # an upload's or a job's id (Store's new_id)
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}


def _bounds(param: Parameter, number: float) -> None:
    low, high = param.min, param.max
    if low is not None and (number < low or (param.min_exclusive and number == low)):
        relation = "greater than" if param.min_exclusive else "at least"
        raise ValidationError(param.id, "min_value", f"must be {relation} {low}")
    if high is not None and (number > high or (param.max_exclusive and number == high)):
        relation = "less than" if param.max_exclusive else "at most"
        raise ValidationError(param.id, "max_value", f"must be {relation} {high}")


def coerce_scalar(param: Parameter, raw: object) -> Any:
    """One value of a non-file parameter, converted and checked; raises ValidationError."""
    kind = param.type
    if kind is ParamType.INTEGER:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValidationError(param.id, "invalid", f"{raw!r} is not a whole number")
        if isinstance(raw, str):
            if not _INTEGER.match(raw.strip()):
                raise ValidationError(param.id, "invalid", f"{_show(raw)} is not a whole number")
            if len(raw.strip().lstrip("+-").lstrip("0")) > 19:  # before int(): no 4,300-digit parse
                raise ValidationError(param.id, "max_value", f"{_show(raw)} is too large")
            raw = int(raw.strip())
        if not -(2**63) <= raw < 2**63:  # what the database and the tools can hold
            raise ValidationError(param.id, "max_value", f"{_show(str(raw))} is too large")
        _bounds(param, raw)
        return raw
    if kind is ParamType.DECIMAL:
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError
            number = float(raw)
        except ValueError:
            raise ValidationError(param.id, "invalid", f"{_show(raw)} is not a number") from None
        if not math.isfinite(number):
            raise ValidationError(param.id, "invalid", f"{_show(raw)} is not a finite number")
        _bounds(param, number)
        return number
    if kind is ParamType.FLAG:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValidationError(param.id, "invalid", f"{_show(raw)} is not true or false")
    if kind is ParamType.CHOICE:
        text = str(raw)
        if text not in param.choices:
            allowed = ", ".join(param.choices)
            raise ValidationError(param.id, "invalid", f"{_show(raw)} is not one of: {allowed}")
        return text
    if kind is ParamType.TEXT:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValidationError(param.id, "invalid", "must be text")
        text = str(raw)
        if "\x00" in text:
            raise ValidationError(param.id, "invalid", "must not contain NUL characters")
        if param.min_length is not None and len(text) < param.min_length:
            raise ValidationError(
                param.id, "min_length", f"must be at least {param.min_length} characters long"
            )
        if param.max_length is not None and len(text) > param.max_length:
            raise ValidationError(
                param.id, "max_length", f"must be at most {param.max_length} characters long"
            )
        return text
    raise ValidationError(param.id, "invalid", "a file parameter needs a file")


def check_file_value(param: Parameter, ref: FileRef) -> FileRef:
    """A file value: it must exist, fit the size limit and look like its media type."""
    try:
        size = ref.path.stat().st_size
    except OSError:
        raise ValidationError(param.id, "not_found", f"file {ref.id!r} does not exist") from None
    if param.max_size is not None and size > param.max_size:
        raise ValidationError(
            param.id, "max_length", f"the file is {size} bytes; at most {param.max_size} allowed"
        )
    if param.media_type:
        problem = check_file(ref.path, param.media_type)
        if problem is not None:
            raise ValidationError(param.id, "media_type", f"the file {problem}")
    return ref


def _show(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _bare_value_params(service: Service) -> set[str]:
    """Text parameters whose value would stand alone as an argv item."""
    names = set()
    for argument in service.arguments:
        param = service.parameters.get(argument.id)
        is_text = param is not None and param.type is ParamType.TEXT
        if is_text and argument.value_may_read_as_option:
            names.add(argument.id)
    return names


async def _coerce(
    service: Service, param: Parameter, raw: RawValue, lookup: FileLookup | None
) -> Any:
    if param.type is ParamType.FILE:
        if isinstance(raw, FileRef):
            return check_file_value(param, raw)
        ref = await lookup(raw) if lookup is not None else None
        if ref is None and not (isinstance(raw, str) and ID.match(raw.split("/", 1)[0])):
            raise ValidationError(param.id, "file_id", f"{_show(raw)} is not a file id (an "
                                  "upload's id, or a job's id / the path of its file)")  # fmt: skip
        if ref is None:
            raise ValidationError(param.id, "not_found", f"no file with id {_show(raw)}")
        return check_file_value(param, ref)
    if isinstance(raw, FileRef):
        raise ValidationError(
            param.id, "invalid", "a file was sent for a parameter that is not a file"
        )
    return coerce_scalar(param, raw)


async def validate(
    service: Service,
    raw: Mapping[str, Sequence[RawValue]],
    lookup: FileLookup | None = None,
) -> dict[str, Any]:
    """Typed values for every parameter of ``service``; raises FormErrors listing every problem."""
    errors: dict[str, ValidationError] = {}
    for name in raw:
        if name not in service.parameters:
            errors[name] = ValidationError(
                name, "unexpected", f"{service.id} has no parameter {name!r}"
            )
    bare = _bare_value_params(service)
    provided: dict[str, Any] = {}
    for param in service.parameters.values():
        items = [v for v in raw.get(param.id, ()) if not (isinstance(v, str) and v == "")]
        if not param.array and len(items) > 1:
            errors[param.id] = ValidationError(param.id, "invalid", "takes one value, not several")
            continue
        try:
            coerced = [await _coerce(service, param, item, lookup) for item in items]
            if param.id in bare:
                for value in coerced:
                    if value.startswith("-"):
                        raise ValidationError(
                            param.id,
                            "invalid",
                            "a value starting with '-' is not allowed here, "
                            "where the tool would read it as an option",
                        )
        except ValidationError as exc:
            errors[param.id] = exc
            continue
        if coerced:
            provided[param.id] = coerced if param.array else coerced[0]
    if errors:
        raise FormErrors(errors.values())

    # Conditions: a provided value that fails its condition is an error; a default that
    # fails it is dropped (the previous system's two passes).
    values = {pid: provided.get(pid, p.default) for pid, p in service.parameters.items()}
    for param in service.parameters.values():
        if param.condition is None or values[param.id] is None:
            continue
        if not param.condition.evaluate(values[param.id], values):
            if param.id in provided:
                errors[param.id] = ValidationError(
                    param.id, "condition", f"not allowed here: needs {param.condition.text}"
                )
            else:
                values[param.id] = None
    for param in service.parameters.values():
        if param.id in errors or param.condition is None or values[param.id] is None:
            continue
        if not param.condition.evaluate(values[param.id], values):
            errors[param.id] = ValidationError(
                param.id, "condition", f"not allowed here: needs {param.condition.text}"
            )
    for param in service.parameters.values():
        missing = param.required and values[param.id] in (None, []) and param.id not in errors
        applies = param.condition is None or param.condition.evaluate(None, values)
        if missing and applies:
            errors[param.id] = ValidationError(param.id, "required", "a value is required")
    if errors:
        raise FormErrors(errors.values())
    return values


def dump_values(values: dict[str, Any]) -> dict[str, Any]:
    """Validated values as they are stored with a job: a file becomes its reference (an
    upload id or ``<job id>/<path>``), never a path; its location is in the job's plan."""

    def dump(value: Any) -> Any:
        if isinstance(value, FileRef):
            return {"file": {"id": value.id, "label": value.label, "media_type": value.media_type}}
        if isinstance(value, list):
            return [dump(v) for v in value]
        return value

    return {key: dump(value) for key, value in values.items()}
