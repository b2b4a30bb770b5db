"""Mistakes in a service file that load fine but show only when a user's job runs.

A file that parses is not yet right: an ``args`` entry that no parameter feeds drops the
user's value without a word (in a file of the previous system's form, where its public
deployment has such entries, only a warning: ``service_idioms``), ``${gapopen}`` where ``$(value)`` was meant fails every job,
``$(valeu)`` reaches the tool literally. ``appliance check`` reports every such mistake
of a file, each with its key; the service still loads (the web process logs them), so a
running site is not changed by a new check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from appliance.commandline import given_env
from appliance.errors import ConfigError
from appliance.mediatypes import CHECKERS, base_type
from appliance.model import ParamType, Service
from appliance.selection import load_selector
from appliance.templates import ArgTemplate, Env

# Docker's reference grammar (distribution/reference), without upper case anywhere.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    rf"(?:@sha256:[a-f0-9]{{64}})?$"
)
_PLACEHOLDER = re.compile(r"\$\(([^)]*)\)")
KNOWN_MEDIA_TYPES = frozenset(CHECKERS) | {
    "application/octet-stream", "application/gzip", "application/zip", "application/pdf",
    "application/xml", "text/xml", "text/html", "text/csv", "text/tab-separated-values",
    "application/x-stockholm", "application/x-msf", "application/x-pir", "application/x-phylip",
    "text/x-newick", "application/x-newick", "text/x-nh", "application/x-nexus", "chemical/x-pdb",
    "application/x-pdb", "image/png", "image/svg+xml", "application/postscript",
    # a predictor's results for Jalview (the previous system's deployments write these)
    "application/jalview-annotations", "application/jalview-features",
}  # fmt: skip


def _problem(service: Service, key: str, message: str) -> ConfigError:
    return ConfigError(message, source=service.source, key=key)


def _env_names(templates: tuple[ArgTemplate, ...]) -> list[str]:
    return [s.name for t in templates for s in t.segments if isinstance(s, Env)]


def _literal(templates: tuple[ArgTemplate, ...]) -> str:
    return " ".join(s for t in templates for s in t.segments if isinstance(s, str))


def service_mistakes(
    service: Service, environ: Mapping[str, str] | None = None
) -> list[ConfigError]:
    """Every mistake found in ``service`` (an empty list: none)."""
    environ = os.environ if environ is None else environ
    found: list[ConfigError] = []
    defined = set(environ) | set(service.env) | set(given_env(service, environ))
    for choice in service.runners.values():
        defined |= set(choice.env)
    consts = {name for choice in service.runners.values() for name in choice.consts}
    for name in _env_names(service.command):
        if name not in defined:
            found.append(_problem(service, "command", f"${{{name}}}: no environment variable "
                                  f"{name} is set (the service's env, or the processes')"))  # fmt: skip
    used = set()
    for argument in service.arguments:
        key = f"args.{argument.id}"
        if argument.id in service.parameters:
            used.add(argument.id)
        elif _never_used(service, argument.id, consts) and service.format == "native":
            known = ", ".join(sorted(service.parameters)) or "none"
            found.append(_problem(service, key, f"names no parameter (parameters: {known}) and "
                                  "has no default: it is never used"))  # fmt: skip
        for name in _env_names(argument.template):
            if name not in defined:
                hint = (" (a parameter's value is $(value))"
                        if name in service.parameters else "")  # fmt: skip
                found.append(_problem(service, f"{key}.arg", f"${{{name}}}: no environment "
                                      f"variable {name} is set{hint}"))  # fmt: skip
        for word in _PLACEHOLDER.findall(_literal(argument.template)):
            found.append(_problem(service, f"{key}.arg", f"$({word}) is not a placeholder: "
                                  "the value is $(value) (it would reach the tool as written)"))  # fmt: skip
    for parameter in service.parameters.values():
        if parameter.id not in used:
            found.append(_problem(service, f"parameters.{parameter.id}", "no entry in 'args' "
                                  "uses it: a value given for it would be dropped"))  # fmt: skip
        if parameter.type is ParamType.FILE and parameter.media_type:
            kind = base_type(parameter.media_type)
            if kind not in KNOWN_MEDIA_TYPES:
                found.append(_problem(service, f"parameters.{parameter.id}.media-type",
                                      f"unknown media type {kind!r} (known: "
                                      f"{', '.join(sorted(KNOWN_MEDIA_TYPES))})"))  # fmt: skip
    for output in service.outputs:
        if output.media_type and base_type(output.media_type) not in KNOWN_MEDIA_TYPES:
            found.append(_problem(service, f"outputs.{output.id}.media-type",
                                  f"unknown media type {base_type(output.media_type)!r}"))  # fmt: skip
    if service.selector:
        try:
            load_selector(service.selector, Path(service.source).parent)
        except ConfigError as exc:
            found.append(_problem(service, "execution.selector", exc.reason))
    if service.image is not None and not IMAGE_REFERENCE.match(service.image):
        found.append(_problem(service, "image", f"{service.image!r} is not a valid image reference "
                              "(lower case, no spaces: registry/name:tag)"))  # fmt: skip
    return found


def _never_used(service: Service, arg_id: str, consts: set[str]) -> bool:
    argument = service.argument(arg_id)
    return (
        argument is not None
        and arg_id not in service.parameters
        and argument.default is None
        and arg_id not in consts
    )


def service_idioms(service: Service) -> list[ConfigError]:
    """What the previous system accepts without a word and a job never notices: warnings,
    not mistakes, in its files (its public deployment has them: an ``args`` entry kept
    for a parameter that was removed, such as MAFFT's ``_clustalout``)."""
    if service.format == "native":
        return []
    consts = {name for choice in service.runners.values() for name in choice.consts}
    return [
        _problem(service, f"args.{a.id}", "names no parameter and has no default: it is never "
                 "used (the previous system ignores it too; delete it to silence this)")
        for a in service.arguments
        if _never_used(service, a.id, consts)
    ]  # fmt: skip


def ignored_files(directory: Path) -> list[ConfigError]:
    """Files that look like service files but are not read (only ``*.service.yaml`` is)."""
    if not directory.is_dir():
        return []
    return [
        ConfigError("not read: service files are named NAME.service.yaml", source=str(path))
        for path in sorted(directory.rglob("*"))
        if path.is_file()
        and re.search(r"\.service\.(yml|YAML|YML|Yaml)$|\.service$|service\.ya?ml$", path.name)
        and not path.name.endswith(".service.yaml")
    ]
