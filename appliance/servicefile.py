"""Service definition files, in the previous system's form and in the native form.

Both become one ``Service``. The previous system's files (``slivka-version`` at the top)
load unchanged; the native form (``appliance-version`` at the top) adds what containers
need: ``image``, ``resources`` and ``runner``. See docs/services.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from appliance.conditions import Condition
from appliance.errors import ConfigError, ValidationError
from appliance.forms import coerce_scalar
from appliance.model import (
    Argument,
    Output,
    Parameter,
    ParamType,
    Preset,
    Resources,
    RunnerChoice,
    Service,
    ServiceTest,
    WrittenNumber,
)
from appliance.symlinks import check_symlink_template
from appliance.templates import parse_item, parse_template, split_template
from appliance.units import parse_duration, parse_size

SUFFIX = ".service.yaml"
SERVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
PARAM_ID = re.compile(r"^[A-Za-z0-9_\-]+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

COMMON_KEYS = {
    "name", "description", "author", "version", "license", "classifiers",
    "parameters", "command", "args", "outputs", "execution", "env", "tests", "presets",
}  # fmt: skip
LEGACY_KEYS = COMMON_KEYS | {"slivka-version"}
NATIVE_KEYS = COMMON_KEYS | {"appliance-version", "image", "resources", "runner", "reuse"}

TYPE_NAMES = {
    "integer": ParamType.INTEGER, "int": ParamType.INTEGER,
    "decimal": ParamType.DECIMAL, "float": ParamType.DECIMAL,
    "text": ParamType.TEXT, "string": ParamType.TEXT,
    "flag": ParamType.FLAG, "boolean": ParamType.FLAG,
    "choice": ParamType.CHOICE,
    "file": ParamType.FILE,
}  # fmt: skip
PARAM_KEYS = {
    "name", "type", "description", "default", "required", "condition", "min", "max",
    "min-exclusive", "max-exclusive", "min-length", "max-length", "choices", "media-type",
    "media-type-parameters", "extensions", "max-size", "example",
}  # fmt: skip

# The previous system's runner classes, and the runner configuration each maps to.
LEGACY_RUNNERS = {
    "SlivkaQueueRunner": "local",
    "ShellRunner": "local",
    "SlurmRunner": "slurm",
    "GridEngineRunner": "gridengine",
    "LSFRunner": "lsf",
}
DEFAULT_NATIVE_RUNNER = "docker"

T = TypeVar("T")


def _get(
    data: dict[str, Any], key: str, kind: type[T] | tuple[type, ...], default: Any = None
) -> Any:
    value = data.get(key, default)
    if value is None or value is default:
        return value
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"expected a number, got {value!r}", key=key)
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"expected {_TYPE_WORDS.get(names, names)}, got {value!r}", key=key)
    return value


_TYPE_WORDS = {"str": "text", "dict": "a mapping", "list": "a list", "bool": "true or false",
               "int": "a whole number", "int or float": "a number"}  # fmt: skip


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = _get(data, key, dict, {})
    return dict(value) if value else {}


def _unknown(data: dict[str, Any], allowed: set[str], where: str = "") -> None:
    for key in data:
        if key not in allowed:
            full = f"{where}.{key}" if where else str(key)
            raise ConfigError("unknown key", key=full)


def _each(items: dict[str, Any], prefix: str, parse: Callable[[str, Any], T]) -> list[T]:
    out: list[T] = []
    for key, value in items.items():
        try:
            out.append(parse(str(key), value))
        except ConfigError as exc:
            raise exc.at(f"{prefix}.{key}") from None
    return out


def _yes_no(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("yes", "no"):
        return bool(value == "yes")
    raise ConfigError(f"expected true or false, got {value!r}", key=key)


def _parse_parameter(pid: str, data: Any) -> Parameter:
    if not PARAM_ID.match(pid):
        raise ConfigError("a parameter id may only have letters, digits, '-' and '_'")
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping")
    _unknown(data, PARAM_KEYS)
    type_name = _get(data, "type", str)
    if type_name is None:
        raise ConfigError("missing", key="type")
    array = type_name.endswith("[]")
    base = type_name[:-2] if array else type_name
    if base not in TYPE_NAMES:
        known = ", ".join(sorted(TYPE_NAMES))
        raise ConfigError(
            f"unknown type {type_name!r} (known: {known}, each with [] for lists)", key="type"
        )
    kind = TYPE_NAMES[base]
    name = _get(data, "name", str)
    if name is None:
        raise ConfigError("missing", key="name")
    choices_raw = _mapping(data, "choices")
    if kind is ParamType.CHOICE and not choices_raw:
        raise ConfigError("a choice parameter needs choices", key="choices")
    condition_text = _get(data, "condition", str)
    try:
        condition = Condition.parse(condition_text) if condition_text else None
    except ConfigError as exc:
        raise ConfigError(exc.reason, key="condition") from None
    max_size = data.get("max-size")
    try:
        size_limit = parse_size(max_size) if max_size is not None else None
    except ValueError as exc:
        raise ConfigError(str(exc), key="max-size") from None
    extensions = _get(data, "extensions", list, [])
    param = Parameter(
        id=pid,
        name=name,
        type=kind,
        description=_get(data, "description", str, "") or "",
        array=array,
        required=_yes_no(data.get("required", True), "required"),
        condition=condition,
        min=_get(data, "min", (int, float)),
        max=_get(data, "max", (int, float)),
        min_exclusive=_yes_no(data.get("min-exclusive", False), "min-exclusive"),
        max_exclusive=_yes_no(data.get("max-exclusive", False), "max-exclusive"),
        min_length=_get(data, "min-length", int),
        max_length=_get(data, "max-length", int),
        choices={str(k): None if v is None else str(v) for k, v in choices_raw.items()},
        media_type=_get(data, "media-type", str),
        media_type_parameters=_mapping(data, "media-type-parameters"),
        extensions=tuple(str(e) for e in extensions),
        max_size=size_limit,
        example=_example(data.get("example")),
    )
    if param.example is not None and kind is not ParamType.FILE:
        try:
            coerce_scalar(param, param.example)
        except ValidationError as exc:
            raise ConfigError(f"the example is not valid: {exc.message}", key="example") from None
    default = data.get("default")
    if default is None:
        return param
    if kind is ParamType.FILE:
        raise ConfigError("a file parameter cannot have a default", key="default")
    items = default if isinstance(default, list) else [default]
    if isinstance(default, list) and not array:
        raise ConfigError("a list default needs an array type (with [])", key="default")
    try:
        values = [WrittenNumber.of(item, coerce_scalar(param, item)) for item in items]
    except ValidationError as exc:
        raise ConfigError(f"the default is not valid: {exc.message}", key="default") from None
    return _replace(param, default=values if array else values[0], required=False)


def _example(value: Any) -> str | None:
    """An example value: the text a file parameter's example file holds, or a value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str | int | float):
        raise ConfigError(f"expected text or a number, got {value!r}", key="example")
    return str(value)


def _replace(param: Parameter, **changes: Any) -> Parameter:
    import dataclasses

    return dataclasses.replace(param, **changes)


def _parse_argument(params: dict[str, Parameter], native: bool) -> Callable[[str, Any], Argument]:
    def parse(aid: str, data: Any) -> Argument:
        if not isinstance(data, dict):
            raise ConfigError("expected a mapping with 'arg'")
        _unknown(data, {"arg", "default", "join", "symlink"})
        raw = data.get("arg")
        if isinstance(raw, list) and native:
            template = parse_template([str(i) for i in raw], value_slots=True)
        elif isinstance(raw, str) and raw:
            template = tuple(parse_item(i, value_slots=True) for i in split_template(raw))
        else:
            raise ConfigError("expected a non-empty template", key="arg")
        default = data.get("default")
        if default is not None and not isinstance(default, str | int | float | bool):
            raise ConfigError(f"expected text, got {default!r}", key="default")
        param = params.get(aid)
        symlink = _get(data, "symlink", str)
        if symlink is not None:
            if param is None or param.type is not ParamType.FILE:
                raise ConfigError("symlink is only for file parameters", key="symlink")
            try:
                check_symlink_template(symlink, array=param.array)
            except ConfigError as exc:
                raise exc.at("symlink") from None
        return Argument(
            id=aid,
            template=template,
            default=None if default is None or default is False else _default_text(default),
            join=_get(data, "join", str),
            symlink=symlink,
        )

    return parse


def _default_text(value: str | int | float | bool) -> str:
    return "true" if value is True else str(value)


def _parse_output(oid: str, data: Any) -> Output:
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with 'path'")
    _unknown(data, {"path", "name", "media-type"})
    path = _get(data, "path", str)
    if not path:
        raise ConfigError("missing", key="path")
    if path.startswith("/") or ".." in Path(path).parts:
        raise ConfigError(
            "must be a pattern inside the job directory (no '/' start, no '..')", key="path"
        )
    return Output(
        oid, path, _get(data, "name", str, "") or oid, _get(data, "media-type", str, "") or ""
    )


def _parse_runner_choice(native: bool) -> Callable[[str, Any], RunnerChoice]:
    def parse(rid: str, data: Any) -> RunnerChoice:
        if not isinstance(data, dict):
            raise ConfigError("expected a mapping")
        allowed = {"type", "runner", "parameters", "consts", "env", "selector-options"}
        _unknown(data, allowed)
        runner = _get(data, "runner", str)
        legacy_type = _get(data, "type", str)
        if runner is None and legacy_type is not None:
            runner = LEGACY_RUNNERS.get(legacy_type, legacy_type)
        if runner is None:
            raise ConfigError("needs 'runner' (a configuration in runners/) or 'type'")
        consts = {str(k): str(v) for k, v in _mapping(data, "consts").items()}
        return RunnerChoice(
            id=rid,
            runner=runner,
            consts=consts,
            env=_parse_env(_mapping(data, "env"), "env"),
            parameters=_mapping(data, "parameters"),
            previous=legacy_type if _get(data, "runner", str) is None and legacy_type else "",
        )

    return parse


def _parse_env(data: dict[str, Any], where: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in data.items():
        if not ENV_NAME.match(str(name)):
            raise ConfigError("not a valid environment variable name", key=f"{where}.{name}")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"expected text, got {value!r}", key=f"{where}.{name}")
        try:
            parse_item(str(value), value_slots=False)
        except ConfigError as exc:
            raise ConfigError(exc.reason, key=f"{where}.{name}") from None
        env[str(name)] = str(value)
    return env


def parse_resources(data: dict[str, Any], where: str = "resources") -> Resources:
    """Job limits, as a service's ``resources`` or a runner configuration's ``limits``."""
    _unknown(data, {"cpus", "memory", "time-limit", "pids", "network", "user",
                    "read-only-root", "capabilities"}, where)  # fmt: skip
    try:
        memory = parse_size(data["memory"]) if "memory" in data else None
    except ValueError as exc:
        raise ConfigError(str(exc), key=f"{where}.memory") from None
    try:
        time_limit = parse_duration(data["time-limit"]) if "time-limit" in data else None
    except ValueError as exc:
        raise ConfigError(str(exc), key=f"{where}.time-limit") from None
    cpus = data.get("cpus")
    if cpus is not None and (
        isinstance(cpus, bool) or not isinstance(cpus, int | float) or cpus <= 0
    ):
        raise ConfigError(f"expected a positive number, got {cpus!r}", key=f"{where}.cpus")
    pids = data.get("pids")
    if pids is not None and (isinstance(pids, bool) or not isinstance(pids, int) or pids < 1):
        raise ConfigError(
            f"expected a whole number of at least 1, got {pids!r}", key=f"{where}.pids"
        )
    caps = data.get("capabilities")
    if caps is not None and not (isinstance(caps, list) and all(isinstance(c, str) for c in caps)):
        raise ConfigError("expected a list of capability names", key=f"{where}.capabilities")
    network = data.get("network")
    read_only = data.get("read-only-root")
    user = data.get("user")
    return Resources(
        cpus=None if cpus is None else float(cpus),
        memory=memory,
        time_limit=time_limit,
        pids=pids,
        network=None if network is None else _yes_no(network, f"{where}.network"),
        user=None if user is None else str(user),
        read_only_root=None if read_only is None else _yes_no(read_only, f"{where}.read-only-root"),
        capabilities=None if caps is None else tuple(caps),
    )


def _parse_tests(raw: Any) -> tuple[ServiceTest, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("expected a list", key="tests")
    tests = []
    for index, item in enumerate(raw):
        key = f"tests.{index}"
        if not isinstance(item, dict):
            raise ConfigError("expected a mapping", key=key)
        _unknown(item, {"applicable-runners", "parameters", "timeout", "interval"}, key)
        try:
            timeout = parse_duration(item.get("timeout", 900))
            interval = parse_duration(item.get("interval", 3600))
        except ValueError as exc:
            raise ConfigError(str(exc), key=key) from None
        tests.append(
            ServiceTest(
                parameters=_mapping(item, "parameters"),
                applicable_runners=tuple(str(r) for r in item.get("applicable-runners") or ()),
                timeout=timeout,
                interval=interval,
            )
        )
    return tuple(tests)


def _parse_presets(raw: Any, params: dict[str, Parameter]) -> tuple[Preset, ...]:
    """``presets: {id: {name, description, values: {parameter: value}}}``; every value is
    checked as a submission's would be (files cannot be preset)."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping of preset ids", key="presets")
    presets = []
    for preset_id, item in raw.items():
        key = f"presets.{preset_id}"
        if not isinstance(item, dict):
            raise ConfigError("expected a mapping with name, description and values", key=key)
        _unknown(item, {"name", "description", "values"}, key)
        name = item.get("name") or preset_id
        values = item.get("values") or {}
        if not isinstance(values, dict):
            raise ConfigError("expected a mapping of parameter ids to values", key=f"{key}.values")
        for pid, value in values.items():
            where = f"{key}.values.{pid}"
            param = params.get(str(pid))
            if param is None:
                raise ConfigError("names no parameter", key=where)
            if param.type is ParamType.FILE:
                raise ConfigError("a file cannot be preset", key=where)
            try:
                for one in value if isinstance(value, list) and param.array else [value]:
                    coerce_scalar(param, one)
            except ValidationError as exc:
                raise ConfigError(exc.message, key=where) from None
        presets.append(Preset(str(preset_id), str(name), str(item.get("description") or ""),
                              {str(k): v for k, v in values.items()}))  # fmt: skip
    return tuple(presets)


def parse_service(service_id: str, data: dict[str, Any], source: str = "") -> Service:
    """The Service described by ``data``; raises ConfigError naming the key."""
    if not SERVICE_ID.match(service_id):
        raise ConfigError(
            "a service id (the file name before .service.yaml) may only have "
            "letters, digits, '.', '-' and '_'"
        )
    if "appliance-version" in data:
        native = True
        _unknown(data, NATIVE_KEYS)
    elif "slivka-version" in data:
        native = False
        _unknown(data, LEGACY_KEYS)
    else:
        raise ConfigError(
            "missing 'appliance-version' (native form) or 'slivka-version' "
            "(the previous system's form)"
        )
    for key in ("name", "command"):
        if not data.get(key):
            raise ConfigError("missing", key=key)
    if not native:
        for key in ("parameters", "args", "outputs", "execution"):
            if key not in data:
                raise ConfigError("missing", key=key)
    params = {p.id: p for p in _each(_mapping(data, "parameters"), "parameters", _parse_parameter)}
    for param in params.values():
        if param.condition is not None:
            unknown = param.condition.names - set(params) - {"self"}
            if unknown:
                raise ConfigError(
                    f"refers to unknown parameters: {', '.join(sorted(unknown))}",
                    key=f"parameters.{param.id}.condition",
                )
    command_raw = data["command"]
    if not isinstance(command_raw, str | list):
        raise ConfigError("expected a string or a list", key="command")
    try:
        command = parse_template(command_raw, value_slots=False)
    except ConfigError as exc:
        raise ConfigError(exc.reason, key="command") from None
    arguments = _each(_mapping(data, "args"), "args", _parse_argument(params, native))
    outputs = _each(_mapping(data, "outputs"), "outputs", _parse_output)
    execution = _mapping(data, "execution")
    _unknown(execution, {"runners", "selector"}, "execution")
    runners = {
        r.id: r
        for r in _each(
            _mapping(execution, "runners"), "execution.runners", _parse_runner_choice(native)
        )
    }
    if native and "runner" in data:
        if runners:
            raise ConfigError("give either 'runner' or 'execution.runners', not both", key="runner")
        runners = {"default": RunnerChoice("default", str(data["runner"]))}
    if native and not runners:
        runners = {"default": RunnerChoice("default", DEFAULT_NATIVE_RUNNER)}
    if not runners:
        raise ConfigError("no runner is given", key="execution.runners")
    for choice in runners.values():
        for const in choice.consts:
            if not any(a.id == const for a in arguments):
                raise ConfigError(
                    "names no argument in 'args'",
                    key=f"execution.runners.{choice.id}.consts.{const}",
                )
    classifiers = _get(data, "classifiers", list, [])
    return Service(
        id=service_id,
        name=_get(data, "name", str),
        source=source,
        format="native" if native else "slivka",
        command=command,
        parameters=params,
        arguments=tuple(arguments),
        outputs=tuple(outputs),
        runners=runners,
        description=_get(data, "description", str, "") or "",
        author=_get(data, "author", str, "") or "",
        version=str(data.get("version") or ""),
        license=_get(data, "license", str, "") or "",
        classifiers=tuple(str(c) for c in classifiers),
        env=_parse_env(_mapping(data, "env"), "env"),
        image=_get(data, "image", str) if native else None,
        resources=parse_resources(_mapping(data, "resources")) if native else Resources(),
        selector=_get(execution, "selector", str),
        tests=_parse_tests(data.get("tests")),
        presets=_parse_presets(data.get("presets"), params),
        reuse=native and _yes_no(data.get("reuse", False), "reuse"),
    )
