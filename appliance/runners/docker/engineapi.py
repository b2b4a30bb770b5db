"""Requests to the Docker engine made leaner than docker-py makes them.

The engine is the bottleneck when many jobs start and end: docker-py inspects each
container it has just created, and each container before reading each of its log
streams. What those inspections would tell is known here, so they are left out.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from typing import Any

import docker
from docker.models.containers import _create_container_args

FRAME_HEADER = 8  # each chunk of a container's logs: stream (1 out, 2 err), 3 zeros, length
STDERR = 2


def create(client: docker.DockerClient, image: str, options: dict[str, Any]) -> Any:
    """Create the container; its model without asking the engine about it again.

    What an inspection would learn (the id, the name, "created", our labels) is known.
    """
    arguments = {"command": None, **options, "image": image,
                 "version": client.api._version}  # fmt: skip
    made = client.api.create_container(**_create_container_args(arguments))
    return client.containers.prepare_model({
        "Id": made["Id"], "Name": f"/{options['name']}", "State": {"Status": "created"},
        "Config": {"Labels": dict(options.get("labels") or {})},
    })  # fmt: skip


def list_sparse(client: docker.DockerClient, **options: Any) -> list[Any]:
    """Containers as the engine's list gives them: sparse, for without it docker-py
    inspects every container listed (200 waiting containers made each status round
    200 requests). Name and labels are put where docker-py's properties look."""
    listed: list[Any] = client.containers.list(sparse=True, **options)
    for container in listed:
        attrs = container.attrs
        if attrs.get("Name") is None and attrs.get("Names"):
            attrs["Name"] = attrs["Names"][0]
        attrs.setdefault("Config", {"Labels": attrs.get("Labels") or {}})
    return listed


def logs(client: docker.DockerClient, container_id: str) -> Iterator[tuple[int, bytes]]:
    """Both output streams in one request, each chunk with its stream's number.

    docker-py's ``logs`` gives one stream per request and inspects the container
    before each, to learn whether it has a terminal (ours never have).
    """
    api = client.api
    response = api._get(api._url("/containers/{0}/logs", container_id),
                        params={"stdout": 1, "stderr": 1}, stream=True)  # fmt: skip
    with contextlib.closing(response):
        api._raise_for_status(response)
        while header := response.raw.read(FRAME_HEADER):
            stream, length = struct.unpack(">BxxxL", header)
            if length:
                yield stream, response.raw.read(length)


def exit_of(container: Any) -> tuple[int, bool, str]:
    """An ended container's exit code, whether it ran out of memory, and why it failed.

    A container from the engine's list says only "Exited (N)": unless N is 0, it is
    inspected to learn why (out of memory, an engine error, ...).
    """
    state = container.attrs.get("State")
    if not isinstance(state, dict) and not str(container.attrs.get("Status", "")).startswith(
        "Exited (0)"
    ):
        container.reload()
    state = container.attrs.get("State")
    if not isinstance(state, dict):  # from the list: only "exited", and the code was 0
        state = {"ExitCode": 0}
    oom = bool(state.get("OOMKilled"))
    message = "the job ran out of memory and was killed" if oom else str(state.get("Error") or "")
    return int(state.get("ExitCode", -1)), oom, message
