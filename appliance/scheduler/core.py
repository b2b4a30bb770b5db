"""The scheduler process: its tasks, wake-ups, leases, heartbeat and graceful stop.

One ``Scheduler`` per process, with an ``owner`` id of its own and the runners it was
configured with; it claims and adopts only jobs of those runners, so schedulers with
different runners (a workstation's docker, a SLURM submit host, a cluster) can share one
database. It holds the jobs it has claimed under leases it keeps renewing; a job whose
holder died is taken over when its lease expires. It is woken over ZeroMQ when a job is
submitted or cancelled and sweeps every ``sweep_seconds`` for anything it was not woken
for. Its tasks:

- dispatch: claims accepted jobs and starts them (``starting``), adopts orphans;
- monitor: statuses, cancellations, time limits, next steps, ends (``following``);
- renew: leases, and the scheduler's presence;
- housekeeping: slow chores on their own cadence (``housekeeping``);
- service tests: each service file's tests, at start and every interval (``servicetests``);
- webhooks and e-mail for ended jobs that name them (``notifying``), when a secret or an
  SMTP server is set;
- image checks: what the runners' images are, published for reuse at submission
  (``images``), and reused outputs copied into their jobs' directories (``copying``);
- heartbeat: touches a file while dispatch and monitor keep completing rounds.

On stop it takes no new work, cancels starts still in progress, gives every lease back
(running jobs go on, for the next scheduler to adopt) and withdraws its presence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from appliance import metrics
from appliance.aio import cancel_all, wait_event
from appliance.errors import ConfigError, StoreError
from appliance.messaging import WakeReceiver, wake_keys
from appliance.runners.base import Notifying
from appliance.scheduler.base import log
from appliance.scheduler.copying import OutputCopies
from appliance.scheduler.following import Following
from appliance.scheduler.housekeeping import Housekeeping
from appliance.scheduler.notifying import Notifier, load_secret
from appliance.scheduler.servicetests import ServiceTests

START_GRACE = 1.0  # seconds that starts in progress get to finish when the scheduler stops


class Scheduler(Following):
    async def run(self, stop: asyncio.Event, *, housekeeping: Housekeeping | None = None) -> None:
        receiver = self._receiver() if self.listen else None
        notifier = self._notifier() if self._notifies() else None
        chores = housekeeping or Housekeeping(self)
        with contextlib.suppress(StoreError):
            await self.store.claims.announce(self.owner, self.runners)
        takers = [asyncio.create_task(self._dispatch_loop(), name="dispatch")]
        if receiver is not None:
            takers.append(asyncio.create_task(self._listen(receiver), name="listen"))
        followers = [
            asyncio.create_task(self._monitor_loop(), name="monitor"),
            asyncio.create_task(self._renew_loop(), name="renew"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(chores.run(), name="housekeeping"),
            *([asyncio.create_task(ServiceTests(self).run(), name="service tests")]
              if self.settings.service_tests else []),
            *([asyncio.create_task(notifier.run(), name="webhooks")] if notifier else []),
            asyncio.create_task(self.image_checks.run(), name="image checks"),
            asyncio.create_task(OutputCopies(self.store, self.volumes, self.files).run(),
                                name="reused outputs"),
            *(asyncio.create_task(self._follow_changes(name, backend), name=f"changes {name}")
              for name, backend in self.backends.items() if isinstance(backend, Notifying)),
        ]  # fmt: skip
        log.info("scheduler %s started with runners: %s", self.owner, ", ".join(self.backends))
        server = (metrics.serve(self.settings.scheduler_metrics_bind, self.held_counts,
                                self.settings)
                  if self.settings.scheduler_metrics_bind else None)  # fmt: skip
        try:
            await stop.wait()
        finally:
            if server is not None:
                await asyncio.to_thread(server.shutdown)
            await self._stop(takers, followers)
            if receiver is not None:
                receiver.close()
            self.files.close()

    def _receiver(self) -> WakeReceiver:
        addresses = self.settings.scheduler_address
        if len(addresses) != 1:
            raise ConfigError(f"a scheduler listens on one address; scheduler_address names "
                              f"{len(addresses)}: {', '.join(addresses)}", key="scheduler_address")  # fmt: skip
        return WakeReceiver(addresses[0], keys=wake_keys(self.settings))

    def _notifies(self) -> bool:
        return self.settings.webhook_secret_file is not None or bool(self.settings.smtp_host)

    def _notifier(self) -> Notifier:
        path = self.settings.webhook_secret_file
        return Notifier(self.store, self.settings, load_secret(path) if path else None)

    def held_counts(self) -> list[tuple[str, str, int]]:
        """The jobs this scheduler follows, by runner and state (a gauge of its metrics)."""
        counts = Counter((h.runner, h.state.value) for h in list(self.held.values()))
        return [(runner, state, n) for (runner, state), n in counts.items()]

    async def _stop(
        self, takers: list[asyncio.Task[None]], followers: list[asyncio.Task[None]]
    ) -> None:
        await cancel_all(takers)
        if self.start_tasks:  # a moment for starts about to finish; the rest are cancelled
            await asyncio.wait(list(self.start_tasks), timeout=START_GRACE)
        starting = list(self.start_tasks.values())
        await cancel_all(list(self.start_tasks))
        await cancel_all([*followers, *self.side_tasks])
        await self._give_back([*self.held, *starting])
        with contextlib.suppress(StoreError):
            await self.store.claims.withdraw(self.owner)
        log.info("scheduler %s stopped; %d running jobs and %d being started left for the "
                 "next one", self.owner, len(self.held), len(starting))  # fmt: skip
        self.held.clear()

    async def _give_back(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            with contextlib.suppress(StoreError):
                await self.store.claims.release(self.owner, job_id)

    async def _listen(self, receiver: WakeReceiver) -> None:
        while True:
            message = await receiver.receive()
            job_id, kind, runner = message.get("job"), message.get("kind"), message.get("runner")
            if kind == "submitted":  # a hint: the job was claimable from its own write
                if runner is None or runner in self.backends:
                    self.kick.set()
                continue
            if kind == "cancel" and job_id in self.held:
                self.cancels_due = 0.0
                self._wake_monitor(self.held[job_id].runner)
            self.kick.set()

    async def _dispatch_loop(self) -> None:
        while True:
            self.kick.clear()
            try:
                await self.dispatch()
                self.progress.completed("dispatch")
            except StoreError as exc:
                log.warning("MongoDB unavailable, pausing: %s", exc)
                await asyncio.sleep(1.0)
                continue
            except Exception:  # a bug must not stop the scheduler taking work
                log.exception("dispatching failed; trying again")
                await asyncio.sleep(1.0)
                continue
            await wait_event(self.kick, self.settings.sweep_seconds)

    async def _renew_loop(self) -> None:
        lease = self.settings.lease_seconds
        while True:
            await asyncio.sleep(max(lease / 3, 0.05))
            ids = [*self.held, *self.claimed]
            try:
                await self.store.claims.announce(self.owner, self.runners)
                with metrics.RENEW_SECONDS.time():
                    kept = await self.store.claims.renew(self.owner, ids, lease)
            except StoreError as exc:
                log.warning("cannot renew leases: %s", exc)
                continue
            for job_id in ids:
                if job_id not in kept and (job_id in self.held or job_id in self.claimed):
                    log.warning("job %s was taken over by another scheduler", job_id)
                    self.held.pop(job_id, None)
                    self.claimed.discard(job_id)

    async def _heartbeat_loop(self) -> None:
        """Touch the heartbeat file while dispatch and monitor keep completing rounds."""
        window = max(3 * self.settings.sweep_seconds, 2.0)
        while True:
            if self.heartbeat is not None and self.progress.fresh(window):
                with contextlib.suppress(OSError):
                    self.heartbeat.touch()
            await asyncio.sleep(min(1.0, window / 4))
