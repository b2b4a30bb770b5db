"""The local backend: jobs run in an ``appliance worker`` pool, reached over ZeroMQ.

Options (runners/local.yaml): ``address`` (default: the ``worker_address`` setting),
``server_key`` (the pool's CURVE public key, needed on a network address),
``client_keys`` (a key file for this end), ``timeout`` (seconds, default 5). The pool
and the scheduler must see the same paths for job directories and uploads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.messaging import CurveKeys, RpcClient
from appliance.runners.base import JobSpec, RunState, RunStatus

if TYPE_CHECKING:
    from appliance.runnerconf import RunnerConfig
    from appliance.settings import Settings


class LocalBackend:
    def __init__(self, client: RpcClient) -> None:
        self.client = client
        self.seen = -1  # the pool's change count at our last look

    async def changed(self, timeout: float) -> None:
        """Long-poll the pool: returns when one of its jobs started or ended."""
        reply = await self.client.call(
            "wait", since=self.seen, timeout=timeout, reply_within=timeout + self.client.timeout
        )
        self.seen = int(reply.get("changes", -1))

    async def submit(self, spec: JobSpec) -> str:
        reply = await self.client.call(
            "submit",
            job_id=spec.job_id,
            argv=list(spec.argv),
            env=spec.env,
            workdir=str(spec.workdir),
            inputs=[{"source": str(i.source), "path": i.path} for i in spec.inputs],
        )
        return str(reply["handle"])

    async def status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        if not handles:
            return {}
        reply = await self.client.call("status", handles=list(handles))
        statuses = reply.get("statuses", {})
        result = {}
        for handle in handles:
            data = statuses.get(handle) or {"state": "lost"}
            code = data.get("exit_code")
            result[handle] = RunStatus(
                RunState(data["state"]),
                None if code is None else int(code),
                str(data.get("message", "")),
            )
        return result

    async def cancel(self, handle: str) -> None:
        await self.client.call("cancel", handle=handle)

    async def close(self) -> None:
        self.client.close()


def create(config: RunnerConfig, settings: Settings) -> LocalBackend:
    options = config.options
    server_key = options.get("server_key")
    client_keys = options.get("client_keys")
    client = RpcClient(
        str(options.get("address") or settings.worker_address),
        server_public=str(server_key).encode() if server_key else None,
        keys=CurveKeys.load(Path(str(client_keys))) if client_keys else None,
        timeout=float(options.get("timeout", 5.0)),
    )
    return LocalBackend(client)
