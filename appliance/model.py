"""The internal model of a service, whichever file format it came from."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from appliance.conditions import Condition
from appliance.templates import ArgTemplate


class ParamType(enum.Enum):
    INTEGER = "integer"
    DECIMAL = "decimal"
    TEXT = "text"
    FLAG = "flag"
    CHOICE = "choice"
    FILE = "file"


class WrittenNumber(float):
    """A decimal from a service file that is written on command lines as the file wrote it
    (``-12``, not ``-12.0``); everywhere else it is the number."""

    text: str

    def __new__(cls, value: float, text: str) -> WrittenNumber:
        number = super().__new__(cls, value)
        number.text = text
        return number

    @classmethod
    def of(cls, raw: Any, value: Any) -> Any:
        """``value`` (``raw`` as a file wrote it, converted): a decimal keeps that text for
        the command line, as the previous system passes a default as written; a value a
        user gives is written as a decimal (``-12.0``), as it does too."""
        if isinstance(value, float) and not isinstance(raw, bool):
            return cls(value, str(raw))
        return value

    def __reduce__(self) -> tuple[type[WrittenNumber], tuple[float, str]]:  # copies keep it
        return (WrittenNumber, (float(self), self.text))

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


@dataclass(frozen=True)
class Parameter:
    id: str
    name: str
    type: ParamType
    description: str = ""
    array: bool = False
    required: bool = True
    default: Any = None
    condition: Condition | None = None
    min: int | float | None = None
    max: int | float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    min_length: int | None = None
    max_length: int | None = None
    # what the user picks -> what the command line gets; None leaves the argument out
    choices: dict[str, str | None] = field(default_factory=dict)
    media_type: str | None = None
    media_type_parameters: dict[str, Any] = field(default_factory=dict)
    extensions: tuple[str, ...] = ()
    max_size: int | None = None
    example: str | None = None  # what the web form's "example" button fills in


@dataclass(frozen=True)
class Argument:
    """One entry of ``args``: how a value (or a constant) becomes command-line items."""

    id: str
    template: tuple[ArgTemplate, ...]
    default: str | None = None
    join: str | None = None
    symlink: str | None = None

    @property
    def value_may_read_as_option(self) -> bool:
        """True when a value stands alone as an argv item with no ``--`` before it in the template."""
        for index, item in enumerate(self.template):
            ended = any(prev.segments == ("--",) for prev in self.template[:index])
            if item.is_bare_slot and not ended:
                return True
        return False


@dataclass(frozen=True)
class Output:
    id: str
    path: str
    name: str = ""
    media_type: str = ""


@dataclass(frozen=True)
class Resources:
    """Limits for one job; ``None`` leaves the runner configuration's default."""

    cpus: float | None = None
    memory: int | None = None
    time_limit: float | None = None
    pids: int | None = None
    network: bool | None = None
    user: str | None = None
    read_only_root: bool | None = None
    capabilities: tuple[str, ...] | None = None

    def over(self, defaults: Resources) -> Resources:
        """These resources where they are set, ``defaults`` elsewhere (a runner's limits)."""
        values = {
            name: getattr(self, name)
            if getattr(self, name) is not None
            else getattr(defaults, name)
            for name in Resources.__dataclass_fields__
        }
        return Resources(**values)


@dataclass(frozen=True)
class RunnerChoice:
    """A service's use of one configured runner (``execution.runners.<id>``)."""

    id: str
    runner: str
    consts: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    previous: str = ""  # the previous system's runner class it named (``type:``), if any


@dataclass(frozen=True)
class ServiceTest:
    parameters: dict[str, Any]
    applicable_runners: tuple[str, ...] = ()
    timeout: float = 900.0
    interval: float = 3600.0


@dataclass(frozen=True)
class Preset:
    """A named set of parameter values (``presets`` in a service file): "fast", "accurate"."""

    id: str
    name: str
    description: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    source: str
    format: str
    command: tuple[ArgTemplate, ...]
    parameters: dict[str, Parameter]
    arguments: tuple[Argument, ...]
    outputs: tuple[Output, ...]
    runners: dict[str, RunnerChoice]
    description: str = ""
    author: str = ""
    version: str = ""
    license: str = ""
    classifiers: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    resources: Resources = field(default_factory=Resources)
    selector: str | None = None
    tests: tuple[ServiceTest, ...] = ()
    presets: tuple[Preset, ...] = ()
    reuse: bool = False  # identical jobs answered from an earlier one (appliance.scheduler.reuse)

    def argument(self, arg_id: str) -> Argument | None:
        for argument in self.arguments:
            if argument.id == arg_id:
                return argument
        return None
