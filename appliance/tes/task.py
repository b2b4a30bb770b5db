"""A TES 1.1 task as a client sends it: checked field by field, then made into a plan.

A task runs as a job of kind ``task``: its executors are the plan's steps, run in order in
one work directory, each in its own container from its image. Every path a task names
(inputs, outputs, volumes, working directories, stdin/stdout/stderr) is a path in the
containers: its first directory (``/data`` of ``/data/in.txt``) is a folder of the work
directory (``fs/data``) mounted there in every executor's container, so executors share
what they write. Inputs are fetched in by the scheduler before the first executor,
outputs sent out after the last one ended well (``appliance.tes.transfer``).

Every error is a ``TaskError`` naming the field (``executors[0].image``) and is answered
400 (403 for an image the site does not allow), never 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from appliance.model import Resources
from appliance.plan import (
    Mount,
    OutputPattern,
    Plan,
    PlanError,
    Step,
    Transfer,
    clean_absolute,
    job_location,
)
from appliance.settings import Settings
from appliance.tes import s3
from appliance.tes.shared import SharedError, locate

GIB = 1024**3
MAX_CONTENT = 1024 * 1024  # bytes of one inline input
MAX_TEXT = 10_000  # characters of a name, description, tag, argument...
# First directories a task may not put its files in: the system's, and ours.
RESERVED_ROOTS = {"", "proc", "sys", "dev", "etc", "bin", "sbin", "lib", "lib32", "lib64",
                  "libx32", "usr", "boot", "run", "job"}  # fmt: skip
BACKEND_PARAMETERS = ("runner",)


class TaskError(ValueError):
    """A task that cannot be accepted: ``field`` names where, ``status`` says how."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        self.field = field
        self.message = message
        self.status = status
        super().__init__(f"{field}: {message}" if field else message)


def _text(value: Any, field: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise TaskError(field, "expected a non-empty string" if required else "expected a string")
    if len(value) > MAX_TEXT:
        raise TaskError(field, f"longer than {MAX_TEXT} characters")
    return value


def _path(value: Any, field: str) -> str:
    text = _text(value, field, required=True)
    try:
        path = clean_absolute(text, "path")
    except PlanError as exc:
        raise TaskError(field, str(exc)) from None
    if path.split("/")[1] in RESERVED_ROOTS:
        taken = ", ".join("/" + root for root in sorted(RESERVED_ROOTS - {""}))
        raise TaskError(field, f"{path!r} is in a folder the system needs ({taken} are taken)")
    return path


def _strings(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TaskError(field, "expected an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise TaskError(f"{field}.{key}", "expected a string")
        _text(key, field)
        _text(item, f"{field}.{key}")
    return dict(value)


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TaskError(field, "expected a list")
    return value


def full_image_name(image: str) -> str:
    """``alpine`` means ``alpine:latest``, as to the engine; tagged or pinned names stay."""
    if "@" in image or ":" in image.rsplit("/", 1)[-1]:
        return image
    return f"{image}:latest"


def image_allowed(image: str, allowed: tuple[str, ...]) -> bool:
    """Exact names, or prefixes ending in ``/`` or ``:`` (``registry.example/``, ``alpine:``);
    a name without a tag is its ``:latest``. After a prefix ending in ``:`` comes a tag and
    nothing else: ``alpine:`` admits ``alpine:3.20``, never ``alpine:5000/other/image`` (a
    registry called alpine, on port 5000)."""
    image = full_image_name(image)
    return any(_admits(rule, image) for rule in allowed)


def _admits(rule: str, image: str) -> bool:
    if rule[-1] == "/":
        return image.startswith(rule)
    if rule[-1] == ":":
        return image.startswith(rule) and "/" not in image[len(rule) :]
    return image == full_image_name(rule)


@dataclass(frozen=True)
class Accepted:
    """A checked task: the document to keep (as given, defaults filled) and its plan."""

    document: dict[str, Any]
    plan: Plan
    runner: str


class TaskChecker:
    """Checks tasks against this site's settings and makes their plans."""

    def __init__(
        self, settings: Settings, runners: dict[str, Resources], image_runners: set[str]
    ) -> None:
        self.settings = settings
        self.runner_limits = runners  # runner id -> its limits
        self.image_runners = image_runners  # runners whose backend runs images

    # -- URLs ------------------------------------------------------------------------

    def _url(self, url: Any, field: str, client: str, *, output: bool) -> str:
        text = _text(url, field, required=True)
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise TaskError(field, "a URL holds no control characters (NUL, newline...)")
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018  # a port out of range, or not a number, is refused here
        except ValueError as exc:
            raise TaskError(field, f"not a URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise TaskError(field, "a file:// URL names no host")
            try:
                locate(unquote(parts.path), self.settings.tes_file_roots, client)
            except SharedError as exc:
                raise TaskError(field, str(exc)) from None
            return text
        if scheme in ("http", "https"):
            if not parts.hostname:
                raise TaskError(field, "an http(s) URL needs a host")
            return text
        if scheme == "s3" and self.settings.tes_s3_endpoint:
            try:
                s3.locate(text, self.settings, client)
            except s3.S3Error as exc:
                raise TaskError(field, str(exc)) from None
            return text
        if scheme in self.settings.tes_staged_schemes:
            return text
        kind = "output" if output else "input"
        raise TaskError(field, f"{kind}s from {scheme or 'this'}:// URLs are not staged here "
                               "(file://, http://, https://"
                               f"{', s3://' if self.settings.tes_s3_endpoint else ''} are)")  # fmt: skip

    # -- the task --------------------------------------------------------------------

    def check(self, task: Any, job_id: str, client: str) -> Accepted:
        """The task checked for ``client`` (its owner), with its plan."""
        if not isinstance(task, dict):
            raise TaskError("", "a task is a JSON object")
        name = _text(task.get("name"), "name")
        description = _text(task.get("description"), "description")
        tags = _strings(task.get("tags"), "tags")
        roots: set[str] = set()

        def place(path: str) -> str:
            """A container path as a path of the work directory (``/data/x`` -> ``fs/data/x``)."""
            roots.add(path.split("/")[1])
            return "fs" + path

        executors = _list(task.get("executors"), "executors")
        if not executors:
            raise TaskError("executors", "a task needs at least one executor")
        if len(executors) > self.settings.tes_max_executors:
            raise TaskError("executors", f"a task has at most {self.settings.tes_max_executors} "
                            "executors here (setting tes_max_executors)")  # fmt: skip
        steps, documents = [], []
        network = True
        for index, raw in enumerate(executors):
            field = f"executors[{index}]"
            if not isinstance(raw, dict):
                raise TaskError(field, "expected an object")
            image = _text(raw.get("image"), f"{field}.image", required=True)
            if not image_allowed(image, self.settings.tes_images):
                raise TaskError(f"{field}.image", f"image {image!r} is not allowed here "
                                "(setting tes_images)", status=403)  # fmt: skip
            network = network and image_allowed(image, self.settings.tes_network_images)
            command = _list(raw.get("command"), f"{field}.command")
            if not command or not all(isinstance(c, str) for c in command):
                raise TaskError(f"{field}.command", "expected a non-empty list of strings")
            for position, item in enumerate(command):
                _text(item, f"{field}.command[{position}]")
            workdir = _path(raw["workdir"], f"{field}.workdir") if raw.get("workdir") else None
            streams = {s: _path(raw[s], f"{field}.{s}") for s in ("stdin", "stdout", "stderr")
                       if raw.get(s)}  # fmt: skip
            ignore = raw.get("ignore_error", False)
            if not isinstance(ignore, bool):
                raise TaskError(f"{field}.ignore_error", "expected true or false")
            env = _strings(raw.get("env"), f"{field}.env")
            if workdir:
                place(workdir)
            steps.append(Step(
                tuple(command), image, env,
                stdout=place(streams["stdout"]) if "stdout" in streams else f"tes/{index}.stdout",
                stderr=place(streams["stderr"]) if "stderr" in streams else f"tes/{index}.stderr",
                stop_on_failure=not ignore, workdir=workdir,
                stdin=place(streams["stdin"]) if "stdin" in streams else None,
            ))  # fmt: skip
            documents.append({"image": image, "command": list(command), **(
                {"workdir": workdir} if workdir else {}), **streams, **(
                {"env": env} if env else {}), "ignore_error": ignore})  # fmt: skip

        stage_in, inputs = self._inputs(task.get("inputs"), place, client)
        stage_out, outputs, patterns = self._outputs(task.get("outputs"), place, client)
        volumes = []
        for index, raw in enumerate(_list(task.get("volumes"), "volumes")):
            volumes.append(_path(raw, f"volumes[{index}]"))
            place(volumes[-1])
        resources, runner, resource_doc = self._resources(task.get("resources"), network)
        try:
            plan = Plan(job_location(job_id), tuple(steps), (), tuple(patterns), resources,
                        tuple(Mount(f"/{root}", f"fs/{root}") for root in sorted(roots)),
                        stage_in, stage_out)  # fmt: skip
        except PlanError as exc:
            raise TaskError("", str(exc)) from None
        document = {"name": name, "description": description, "inputs": inputs,
                    "outputs": outputs, "resources": resource_doc, "executors": documents,
                    "volumes": volumes, "tags": tags}  # fmt: skip
        return Accepted(document, plan, runner)

    def _inputs(self, raw: Any, place: Any,
                client: str) -> tuple[tuple[Transfer, ...], list[dict[str, Any]]]:  # fmt: skip
        transfers, documents = [], []
        for index, item in enumerate(_list(raw, "inputs")):
            field = f"inputs[{index}]"
            if not isinstance(item, dict):
                raise TaskError(field, "expected an object")
            path = _path(item.get("path"), f"{field}.path")
            kind = item.get("type") or "FILE"
            if kind not in ("FILE", "DIRECTORY"):
                raise TaskError(f"{field}.type", "expected FILE or DIRECTORY")
            content = item.get("content")
            url = item.get("url")
            if content is not None and url:
                raise TaskError(field, "give either url or content, not both")
            if content is not None:
                if not isinstance(content, str) or len(content.encode()) > MAX_CONTENT:
                    raise TaskError(
                        f"{field}.content", f"expected a string of at most {MAX_CONTENT} bytes"
                    )
                if kind != "FILE":
                    raise TaskError(f"{field}.content", "inline content makes a FILE")
            else:
                url = self._url(url, f"{field}.url", client, output=False)
            streamable = item.get("streamable", False)
            if not isinstance(streamable, bool):
                raise TaskError(f"{field}.streamable", "expected true or false")
            transfers.append(Transfer(place(path), url or "", content, kind == "DIRECTORY",
                                      container_path=path))  # fmt: skip
            documents.append({k: v for k, v in {
                "name": _text(item.get("name"), f"{field}.name"),
                "description": _text(item.get("description"), f"{field}.description"),
                "url": url, "path": path, "type": kind, "content": content,
                "streamable": streamable}.items() if v not in (None, "")})  # fmt: skip
        return tuple(transfers), documents

    def _outputs(self, raw: Any, place: Any, client: str) -> tuple[
            tuple[Transfer, ...], list[dict[str, Any]], list[OutputPattern]]:  # fmt: skip
        transfers, documents, patterns = [], [], []
        for index, item in enumerate(_list(raw, "outputs")):
            field = f"outputs[{index}]"
            if not isinstance(item, dict):
                raise TaskError(field, "expected an object")
            url = self._url(item.get("url"), f"{field}.url", client, output=True)
            kind = item.get("type") or "FILE"
            if kind not in ("FILE", "DIRECTORY"):
                raise TaskError(f"{field}.type", "expected FILE or DIRECTORY")
            prefix = None
            if item.get("path_prefix"):
                prefix = _path(item["path_prefix"], f"{field}.path_prefix")
            raw_path = _text(item.get("path"), f"{field}.path", required=True)
            if prefix is not None and not raw_path.startswith(prefix):
                raise TaskError(
                    f"{field}.path", f"a wildcard path must start with path_prefix {prefix}"
                )
            path = _path(raw_path, f"{field}.path")
            transfers.append(Transfer(place(path), url, None, kind == "DIRECTORY",
                                      place(prefix) if prefix else None, path))  # fmt: skip
            patterns.append(OutputPattern(f"output-{index}", place(path), _text(
                item.get("name"), f"{field}.name") or path))  # fmt: skip
            documents.append({k: v for k, v in {
                "name": item.get("name"), "description": item.get("description"), "url": url,
                "path": path, "path_prefix": prefix, "type": kind}.items() if v})  # fmt: skip
        return tuple(transfers), documents, patterns

    def _resources(self, raw: Any, network: bool) -> tuple[Resources, str, dict[str, Any]]:
        settings = self.settings
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise TaskError("resources", "expected an object")
        cpus = raw.get("cpu_cores")
        if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1):
            raise TaskError("resources.cpu_cores", "expected a whole number of at least 1")
        numbers = {}
        for key in ("ram_gb", "disk_gb"):
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value) or value <= 0):  # fmt: skip
                raise TaskError(f"resources.{key}", "expected a positive number")
            numbers[key] = value
        preemptible = raw.get("preemptible")
        if preemptible is not None and not isinstance(preemptible, bool):
            raise TaskError("resources.preemptible", "expected true or false")
        zones = _list(raw.get("zones"), "resources.zones")
        if not all(isinstance(z, str) for z in zones):
            raise TaskError("resources.zones", "expected a list of strings")
        parameters = _strings(raw.get("backend_parameters"), "resources.backend_parameters")
        strict = raw.get("backend_parameters_strict", False)
        if not isinstance(strict, bool):
            raise TaskError("resources.backend_parameters_strict", "expected true or false")
        unknown = sorted(set(parameters) - set(BACKEND_PARAMETERS))
        if strict and unknown:
            raise TaskError("resources.backend_parameters", f"not supported here: "
                            f"{', '.join(unknown)} (supported: {', '.join(BACKEND_PARAMETERS)})")  # fmt: skip
        runner = parameters.get("runner") or settings.tes_runner
        if runner not in self.image_runners:
            raise TaskError("resources.backend_parameters.runner",
                            f"runner {runner!r} does not run images here (these do: "
                            f"{', '.join(sorted(self.image_runners)) or 'none'})")  # fmt: skip
        cores = min(cpus or 1, settings.tes_max_cpus)
        ram = min(numbers["ram_gb"], settings.tes_max_ram_gb) if numbers["ram_gb"] else None
        disk = min(numbers["disk_gb"], settings.tes_max_disk_gb) if numbers["disk_gb"] else None
        limits = Resources(cpus=float(cores), memory=int(ram * GIB) if ram else None,
                           time_limit=settings.tes_time_limit, network=network)  # fmt: skip
        resources = limits.over(self.runner_limits[runner])
        document: dict[str, Any] = {"cpu_cores": cores}
        if ram:
            document["ram_gb"] = ram
        if disk:
            document["disk_gb"] = disk
        if preemptible is not None:
            document["preemptible"] = preemptible
        if zones:
            document["zones"] = zones
        if parameters:
            document["backend_parameters"] = parameters
            document["backend_parameters_strict"] = strict
        return resources, runner, document
