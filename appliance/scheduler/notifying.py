"""Sending webhooks and e-mail: each ended job that names a webhook is posted, signed,
until its receiver says 2xx, and one that names an address is told through the site's
SMTP server, until it takes the message; both for at most ``webhook_retry_for`` after
the job ended (an address the server refuses for good, 5xx, is not tried again).

Every ``POLL`` seconds the scheduler reads the notices that are due (a few documents:
``appliance.store.notices``) and their jobs in one query; a notice whose job still runs
is looked at again ``RECHECK`` seconds later, so a post goes at most that long after a
job's end. A due notice of an ended job is taken (one conditional update, so that two
schedulers do not both post it), posted, and its outcome written to the job
(``notify``, ``notify_email``: state, attempts, the last ten tries with their answers)
before the notice is deleted or moved to its next attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from appliance import __version__, mail, mailsend, webhooks
from appliance.errors import ConfigError
from appliance.jobrecord import JobRecord
from appliance.scheduler.rounds import every
from appliance.settings import Settings
from appliance.states import JobState
from appliance.store import Doc, Store
from appliance.store.notices import EMAIL, job_of
from appliance.tes.fetch import FetchError, post

log = logging.getLogger(__name__)
POLL = 2.0  # seconds between looks at the due notices
RECHECK = 5.0  # seconds before a running job's notice is looked at again
BATCH = 100  # notices read per round
AT_ONCE = 10  # posts in flight at once
ORPHAN_AFTER = timedelta(minutes=5)  # a notice whose job was never recorded (or deleted)
TRIES_KEPT = 10


def load_secret(path: Path | None) -> bytes:
    """The site's webhook secret; ConfigError naming the setting when it cannot be read."""
    if path is None:
        raise ConfigError("no webhook secret file is set", key="webhook_secret_file")
    try:
        return webhooks.read_secret(path.read_bytes(), str(path))
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}", key="webhook_secret_file"
        ) from None
    except webhooks.WebhookError as exc:
        raise ConfigError(str(exc), key="webhook_secret_file") from None


def job_path(job: JobRecord) -> str:
    """Where the API shows the job (relative to the site's address)."""
    if job.get("kind") == "task":
        return f"/ga4gh/tes/v1/tasks/{job['_id']}"
    return f"/api/jobs/{job['_id']}"


class Notifier:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        secret: bytes | None,
        *,
        first_delay: float = webhooks.FIRST_DELAY,
        poll: float = POLL,
    ) -> None:
        self.store = store
        self.settings = settings
        self.secret = secret
        self.first_delay = first_delay
        self.poll = poll
        self._slots = asyncio.Semaphore(AT_ONCE)

    async def run(self) -> None:
        await every(lambda: self.poll, "webhooks", self.round, log)

    async def round(self) -> int:
        """Post the due notices of ended jobs; how many were posted."""
        notices = self.store.notices
        now = await self.store.now()
        due = await notices.due(now, BATCH)
        if not due:
            return 0
        jobs = await notices.jobs([job_of(n) for n in due])
        running, ended = [], []
        for notice in due:
            job = jobs.get(job_of(notice))
            if job is None:
                if now - notice["created_at"] > ORPHAN_AFTER:
                    await notices.done(str(notice["_id"]))
                continue
            if JobState(job["state"]).finished:
                ended.append((notice, job))
            else:
                running.append(str(notice["_id"]))
        await notices.postpone(running, now + timedelta(seconds=RECHECK))
        sent = await asyncio.gather(*(self._send(n, j, now) for n, j in ended))
        return sum(sent)

    async def _send(self, notice: Doc, job: JobRecord, now: datetime) -> bool:
        async with self._slots:
            timeout = max(self.settings.webhook_timeout, self.settings.smtp_timeout * 4)
            if not await self.store.notices.take(notice, now + timedelta(seconds=timeout + 60)):
                return False  # another scheduler took it
            if notice.get("channel") == EMAIL:
                status, error, again = await self._mail(str(notice["to"]), job)
            else:
                body = webhooks.payload(job, job_url=job_path(job))
                status, error = await self._post(str(notice["url"]), body, str(job["_id"]))
                again = True
            await self._record(notice, job, status, error, again=again)
            return True

    async def _mail(self, to: str, job: JobRecord) -> tuple[int | None, str, bool]:
        settings = self.settings
        if not settings.smtp_host:
            return None, "this site sends no e-mail now (no smtp_host is set)", True
        message = mail.message(job, to=to, sender=settings.smtp_from, site=settings.instance,
                               job_url=settings.public_url + job_path(job))  # fmt: skip
        return await asyncio.to_thread(mailsend.send, settings, message)

    async def _post(self, url: str, body: bytes, job_id: str) -> tuple[int | None, str]:
        if self.secret is None:
            return None, "this site signs no webhooks now (no webhook_secret_file is set)"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"appliance/{__version__}",
            webhooks.SIGNATURE_HEADER: webhooks.sign(self.secret, int(time.time()), body),
            "Appliance-Event": webhooks.EVENT,
            "Appliance-Delivery": job_id,  # the same on every attempt: receivers de-duplicate
        }
        try:
            status = await post(url, body, headers, timeout=self.settings.webhook_timeout,
                                private=self.settings.webhook_private,
                                allowed_by="webhook_private")  # fmt: skip
        except FetchError as exc:
            return None, str(exc)
        return status, "" if 200 <= status < 300 else f"answered {status}"

    async def _record(self, notice: Doc, job: JobRecord, status: int | None, error: str, *,
                      again: bool) -> None:  # fmt: skip
        notices, job_id, notice_id = self.store.notices, str(job["_id"]), str(notice["_id"])
        email = notice.get("channel") == EMAIL
        field, what = ("notify_email", "e-mail") if email else ("notify", "webhook")
        now = await self.store.now()
        attempts = int(notice.get("attempts") or 0) + 1
        before: dict[str, Any] = (job.get("notify_email") if email else job.get("notify")) or {}
        tried: dict[str, Any] = {"at": now, "ok": not error}
        tried.update({"status": status} if status is not None else {})
        tried.update({"error": error} if error else {})
        notify: dict[str, Any] = {"attempts": attempts,
                                  "tries": [*before.get("tries", []), tried][-TRIES_KEPT:]}  # fmt: skip
        if not email:  # an address is kept in its notice only
            notify["url"] = before.get("url", notice["url"])
        if not error:
            await notices.record(job_id, {**notify, "state": "delivered", "delivered_at": now},
                                 field)  # fmt: skip
            await notices.done(notice_id)
            log.info("job %s: %s delivered (attempt %d)", job_id, what, attempts)
            return
        ended = job.get("completed_at") or notice["created_at"]
        wait = webhooks.delay(attempts, self.first_delay)
        if not again or (now - ended).total_seconds() + wait > self.settings.webhook_retry_for:
            await notices.record(job_id, {**notify, "state": "failed", "error": error}, field)
            await notices.done(notice_id)
            log.warning("job %s: %s given up after %d attempts: %s", job_id, what, attempts, error)
            return
        await notices.record(job_id, {**notify, "state": "pending", "error": error}, field)
        await notices.again(notice_id, attempts, now + timedelta(seconds=wait))
        log.info("job %s: %s failed (%s), again in %.0f s", job_id, what, error, wait)
