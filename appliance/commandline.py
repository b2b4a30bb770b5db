"""From a service and validated values to what a job gets: argv, environment, input files.

``build_command`` is pure: no I/O, no runner state. Environment variables are substituted
into the service's ``env``, ``command`` and argument templates first; parameter values are
put in afterwards, each inside its own argv item, and are never expanded, split or given
to a shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import CommandError
from appliance.forms import FileRef
from appliance.model import Argument, ParamType, RunnerChoice, Service
from appliance.symlinks import staged_name
from appliance.templates import Env, expand_env_value, parse_item


@dataclass(frozen=True)
class StagedFile:
    parameter: str
    source: FileRef
    path: str  # relative to the job directory

    def to_json(self) -> dict[str, str]:
        where = self.source.location or self.source.path
        return {"parameter": self.parameter, "source": str(where), "path": self.path}


@dataclass(frozen=True)
class CommandPlan:
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    files: tuple[StagedFile, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "argv": list(self.argv),
            "env": dict(self.env),
            "files": [f.to_json() for f in self.files],
        }


PREVIOUS_HOME = "/srv/slivka"  # the previous system's SLIVKA_HOME, inside a tool's image


def given_env(service: Service, environ: Mapping[str, str]) -> dict[str, str]:
    """What the previous system gave each command of its files: SLIVKA_HOME, its project
    folder. Here that is where the tool's image keeps the service folder's files (its
    Dockerfile copies them there), unless this process's environment names another."""
    if service.format != "slivka":
        return {}
    return {"SLIVKA_HOME": environ.get("SLIVKA_HOME", PREVIOUS_HOME)}


def environment_names(service: Service) -> set[str]:
    """The environment variables ``service`` substitutes (``${NAME}`` in its command,
    arguments and env values, and the previous system's SLIVKA_HOME)."""
    templates = [*service.command, *(t for a in service.arguments for t in a.template)]
    for values in (service.env, *(choice.env for choice in service.runners.values())):
        templates += [parse_item(text, value_slots=False) for text in values.values()]
    names = {s.name for t in templates for s in t.segments if isinstance(s, Env)}
    return names | set(given_env(service, {}))


def _job_env(
    service: Service, runner: RunnerChoice | None, environ: Mapping[str, str]
) -> dict[str, str]:
    env = given_env(service, environ)
    declared = dict(service.env)
    if runner is not None:
        declared.update(runner.env)
    for name, template in declared.items():
        try:
            env[name] = expand_env_value(template, {**environ, **env})
        except CommandError as exc:
            raise CommandError(f"{service.id}: env {name}: {exc}") from None
    return env


def _stage_files(service: Service, values: Mapping[str, Any]) -> dict[str, list[StagedFile]]:
    staged: dict[str, list[StagedFile]] = {}
    taken: dict[str, str] = {}
    for param in service.parameters.values():
        if param.type is not ParamType.FILE or values.get(param.id) is None:
            continue
        value = values[param.id]
        refs: list[FileRef] = value if isinstance(value, list) else [value]
        argument = service.argument(param.id)
        template = argument.symlink if argument is not None else None
        files = []
        for index, ref in enumerate(refs):
            name = staged_name(
                template, param.id, ref.label, ref.id, index if param.array else None
            )
            if name in taken:
                raise CommandError(
                    f"{service.id}: inputs {taken[name]} and {param.id} would both be "
                    f"staged as {name!r}"
                )
            taken[name] = param.id
            files.append(StagedFile(param.id, ref, name))
        staged[param.id] = files
    return staged


def _as_text(
    service: Service, arg_id: str, value: Any, staged: Mapping[str, list[StagedFile]]
) -> list[str] | None:
    """The value's command-line text(s), or None when the argument is left out."""
    param = service.parameters.get(arg_id)
    if value is None or value is False or value == []:
        return None
    if param is not None and param.type is ParamType.FILE:
        return [f.path for f in staged.get(arg_id, [])] or None
    items = value if isinstance(value, list) else [value]
    texts = []
    for item in items:
        if item is True:
            texts.append("true")
        elif param is not None and param.type is ParamType.CHOICE:
            choice = param.choices.get(str(item), str(item))
            if choice is not None:  # a choice that maps to null is left out
                texts.append(choice)
        elif isinstance(item, float):  # a default as its file wrote it (WrittenNumber)
            texts.append(repr(item))
        else:
            texts.append(str(item))
    if not texts:
        return None
    return texts if isinstance(value, list) else texts[:1]


def _render_argument(
    argument: Argument, texts: list[str], environ: Mapping[str, str], many: bool, free_text: bool
) -> list[str]:
    items = [t.resolve_env(environ) for t in argument.template]
    if many and argument.join is not None:
        texts = [argument.join.join(texts)]
    argv: list[str] = []
    for text in texts:
        for item in items:
            if free_text and argument.value_may_read_as_option and text.startswith("-"):
                raise CommandError(
                    f"argument {argument.id}: value {text!r} would be read as an option"
                )
            argv.append(item.render(text))
    return argv


def build_command(
    service: Service,
    values: Mapping[str, Any],
    environ: Mapping[str, str],
    runner: RunnerChoice | None = None,
) -> CommandPlan:
    """What a job of ``service`` with validated ``values`` runs, in which environment, with which files."""
    env = _job_env(service, runner, environ)
    lookup = {**environ, **env}
    try:
        argv = [item.resolve_env(lookup).render() for item in service.command]
    except CommandError as exc:
        raise CommandError(f"{service.id}: command: {exc}") from None
    staged = _stage_files(service, values)
    consts = runner.consts if runner is not None else {}
    for argument in service.arguments:
        value: Any = consts.get(argument.id)
        if value is None:
            value = values.get(argument.id)
        if value is None:
            value = argument.default
        texts = _as_text(service, argument.id, value, staged)
        if texts is None:
            continue
        many = isinstance(value, list)
        try:
            param = service.parameters.get(argument.id)
            # Constants come from the service's own files; only users' text is checked.
            free_text = param is not None and param.type is ParamType.TEXT
            free_text = free_text and argument.id not in consts
            argv.extend(_render_argument(argument, texts, lookup, many, free_text))
        except CommandError as exc:
            raise CommandError(f"{service.id}: args.{argument.id}: {exc}") from None
    files = tuple(f for group in staged.values() for f in group)
    return CommandPlan(tuple(argv), env, files)
