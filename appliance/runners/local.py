"""The local backend: steps run in an ``appliance worker`` pool, reached over ZeroMQ.

Options (runners/local.yaml): ``address`` (default: the ``worker_address`` setting),
``server_key`` (the pool's CURVE public key, or a key file holding it, needed on a
network address),
``client_keys`` (a key file for this end), ``timeout`` (seconds, default 5), ``roots``
(where the pool sees the jobs and uploads volumes; default the settings' folders).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.messaging import CurveKeys, RpcClient
from appliance.runners.base import RunState, RunStatus, StepRun
from appliance.volumes import Volumes

if TYPE_CHECKING:
    from appliance.runners.config import RunnerConfig
    from appliance.settings import Settings


class LocalBackend:
    def __init__(self, client: RpcClient, roots: Volumes) -> None:
        self.client = client
        self.roots = roots  # the volumes as the pool sees them
        self.seen = -1  # the pool's change count at our last look

    async def changed(self, timeout: float) -> None:
        """Long-poll the pool: returns when one of its jobs started or ended."""
        reply = await self.client.call(
            "wait", since=self.seen, timeout=timeout, reply_within=timeout + self.client.timeout
        )
        self.seen = int(reply.get("changes", -1))

    async def submit(self, run: StepRun) -> str:
        step = run.current
        reply = await self.client.call(
            "submit",
            job_id=run.job_id + run.handle_suffix(),
            argv=list(step.argv),
            env=step.env,
            workdir=self.roots.text(run.plan.work),
            inputs=[{"source": self.roots.text(i.source), "path": i.path} for i in run.plan.inputs],
            step=run.step,
            stdout=step.stdout,
            stderr=step.stderr,
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
            code, state = data.get("exit_code"), RunState(data["state"])
            if state is RunState.QUEUED:  # the pool queues what its slots cannot take now
                result[handle] = RunStatus(state, reason="slot", message=(
                    f"waiting for one of the worker pool's slots ({self.client.address})"))  # fmt: skip
                continue
            result[handle] = RunStatus(state, None if code is None else int(code),
                                       str(data.get("message", "")))  # fmt: skip
        return result

    async def probe(self) -> str:
        reply = await self.client.call("ping")
        return (f"worker pool at {self.client.address}: {reply.get('slots')} slots, "
                f"{reply.get('running')} running, {reply.get('queued')} queued")  # fmt: skip

    async def missing_images(self, images: Sequence[str]) -> list[str]:
        return []  # the pool runs commands on its own machine, not images

    async def cancel(self, handle: str) -> None:
        await self.client.call("cancel", handle=handle)

    async def close(self) -> None:
        self.client.close()


def create(config: RunnerConfig, settings: Settings) -> LocalBackend:
    options = config.options
    server_key = str(options.get("server_key") or "")
    client_keys = options.get("client_keys")
    if server_key.startswith("/"):  # a key file: its public part
        server_public: bytes | None = CurveKeys.load_public(Path(server_key))
    else:
        server_public = server_key.encode() or None
    client = RpcClient(
        str(options.get("address") or settings.worker_address),
        server_public=server_public,
        keys=CurveKeys.load(Path(str(client_keys))) if client_keys else None,
        timeout=float(options.get("timeout", 5.0)),
    )
    local = Volumes.local(settings)
    return LocalBackend(client, Volumes.from_option(options.get("roots"), local, "options.roots"))
