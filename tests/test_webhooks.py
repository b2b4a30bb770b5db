"""Webhooks: the pure rules (URLs, signatures, back-off), then posts to a real HTTP
receiver by the scheduler's notifier, against the real database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from appliance import webhooks
from appliance.aio import cancel_all
from appliance.errors import ConfigError
from appliance.jobrecord import JobRecord
from appliance.scheduler.notifying import Notifier, load_secret
from appliance.settings import Settings
from appliance.store import Store, new_id
from appliance.submission import record
from tests.helpers import make_settings, submit, wait_final, wait_for, write_probe
from tests.test_scheduler import Running

pytestmark = pytest.mark.anyio
SECRET = b"a-secret-of-the-site-0123456789"


# -- the pure rules ----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://example.org/hook", "http://93.184.216.34:8080/x?a=1",
                                 "https://hooks.example.com"])  # fmt: skip
def test_public_webhook_urls_are_taken(url: str) -> None:
    assert webhooks.check_url(url, private=False) == url


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://example.org/x", "http:// or https://"),
    ("https:///nohost", "http:// or https://"),
    ("javascript:alert(1)", "http:// or https://"),
    ("http://127.0.0.1:9/x", "not a public address"),
    ("http://[::1]/x", "not a public address"),
    ("http://10.1.2.3/x", "not a public address"),
    ("http://169.254.169.254/latest/meta-data", "not a public address"),
    ("http://100.64.0.1/x", "not a public address"),
    ("http://[::ffff:192.168.0.1]/x", "not a public address"),
    ("http://localhost:8080/x", "not a public address"),
    ("http://api.localhost/x", "not a public address"),
    ("https://user:pw@example.org/x", "no user name or password"),
    ("http://example.org:99999/x", "not a URL"),
    ("https://example.org/" + "a" * 3000, "at most 2048"),
])  # fmt: skip
def test_other_webhook_urls_are_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(webhooks.WebhookError, match=why):
        webhooks.check_url(url, private=False)


def test_private_addresses_are_taken_when_the_site_allows_them() -> None:
    assert webhooks.check_url("http://127.0.0.1:9/x", private=True) == "http://127.0.0.1:9/x"
    with pytest.raises(webhooks.WebhookError):  # still http(s) only
        webhooks.check_url("file:///etc/passwd", private=True)


def test_a_signature_checks_and_any_change_breaks_it() -> None:
    body = b'{"id":"x","status":"COMPLETED"}'
    header = webhooks.sign(SECRET, 1_800_000_000, body)
    assert header.startswith("t=1800000000,v1=")
    assert webhooks.verify(SECRET, header, body, now=1_800_000_010) == 1_800_000_000
    for secret, text, wrong in [(b"another-secret-of-16+", body, "does not match"),
                                (SECRET, body + b" ", "does not match"),
                                (SECRET, body, "old")]:  # fmt: skip
        with pytest.raises(webhooks.WebhookError, match=wrong):
            webhooks.verify(
                secret, header, text, now=1_800_000_000 + (1000 if wrong == "old" else 0)
            )
    forged = header.replace("t=1800000000", "t=1800000999")  # a replay made to look new
    with pytest.raises(webhooks.WebhookError, match="does not match"):
        webhooks.verify(SECRET, forged, body, now=1_800_000_999)
    with pytest.raises(webhooks.WebhookError, match="not t="):
        webhooks.verify(SECRET, "sha256=abc", body, now=0)


def test_retries_back_off_doubling_up_to_an_hour() -> None:
    assert [webhooks.delay(n, 10) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert webhooks.delay(30, 10) == webhooks.MAX_DELAY


def test_a_short_or_missing_secret_is_refused_naming_the_setting(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    for path in (short, tmp_path / "missing"):
        with pytest.raises(ConfigError) as caught:
            load_secret(path)
        assert caught.value.key == "webhook_secret_file"
    (tmp_path / "good").write_bytes(SECRET + b"\n")
    assert load_secret(tmp_path / "good") == SECRET


# -- posts to a real receiver ----------------------------------------------------------


@dataclass
class Receiver:
    """An HTTP server that answers 500 to its first ``failures`` posts, then 204."""

    failures: int = 0
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@contextlib.contextmanager
def receiver(
    failures: int = 0, host: str = "127.0.0.1", listen: str = "127.0.0.1"
) -> Iterator[Receiver]:
    """``host``: the address in its URL; ``listen``: where it listens."""
    got = Receiver(failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(500 if len(got.posts) <= got.failures else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((listen, 0), Handler)
    got.url = f"http://{host}:{server.server_address[1]}/hook?site=test"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Settings:
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(SECRET)
    settings = make_settings(tmp_path, mongodb_uri, database_name, webhook_private=True,
                             webhook_secret_file=str(secret))  # fmt: skip
    write_probe(settings, "mem", backend="memory")
    return settings


async def ended_job(store: Store, url: str, state: str = "COMPLETED") -> str:
    """A job that ended, naming the webhook ``url``, recorded as submissions are."""
    now = await store.now()
    job: JobRecord = {"_id": new_id(), "kind": "service", "service": "probe", "state": state,
                      "submitted_at": now, "completed_at": now, "parameters": {}, "values": {},
                      "notify": {"url": url, "state": "pending"}}  # fmt: skip
    await record(store, job, None)
    return str(job["_id"])


@contextlib.asynccontextmanager
async def notifying(notifier: Notifier) -> AsyncIterator[None]:
    task = asyncio.create_task(notifier.run())
    try:
        yield
    finally:
        # cancelled again each second, as the scheduler stops its tasks: on Python 3.11 one
        # cancel can be lost (appliance.aio), and this wait then hung the test for good
        await cancel_all([task])


async def notify_state(store: Store, job_id: str, wanted: str, timeout: float = 20) -> JobRecord:
    async def reached() -> JobRecord | None:
        job = await store.get_job(job_id)
        return job if job and (job.get("notify") or {}).get("state") == wanted else None

    found: JobRecord = await wait_for(reached, timeout)
    return found


async def test_a_receiver_that_fails_twice_gets_one_recorded_delivery_signed(
    settings: Settings, store: Store
) -> None:
    with receiver(failures=2) as hook:
        job_id = await ended_job(store, hook.url)
        notifier = Notifier(store, settings, SECRET, first_delay=0.2, poll=0.1)
        async with notifying(notifier):
            job = await notify_state(store, job_id, "delivered")
            await asyncio.sleep(0.5)  # nothing more is sent
    assert len(hook.posts) == 3
    notify = job["notify"]
    assert notify["attempts"] == 3
    assert [t["ok"] for t in notify["tries"]] == [False, False, True]
    assert [t.get("status") for t in notify["tries"]] == [500, 500, 204]
    assert [t for t in notify["tries"] if t["ok"]] == [notify["tries"][-1]]  # one delivery
    headers, body = hook.posts[-1]
    webhooks.verify(SECRET, headers["appliance-signature"], body, now=time.time())
    assert headers["appliance-delivery"] == job_id and headers["appliance-event"] == "job.finished"
    sent = json.loads(body)
    assert (sent["id"], sent["status"], sent["url"]) == (job_id, "COMPLETED", f"/api/jobs/{job_id}")
    assert await store.notices.pending() == 0  # a delivered notice is gone


async def test_two_notifiers_deliver_a_notice_once(settings: Settings, store: Store) -> None:
    with receiver() as hook:
        ids = [await ended_job(store, hook.url) for _ in range(20)]
        first, second = (Notifier(store, settings, SECRET, poll=0.05) for _ in range(2))
        async with notifying(first), notifying(second):
            for job_id in ids:
                await notify_state(store, job_id, "delivered")
            await asyncio.sleep(0.3)
    delivered = sorted(h["appliance-delivery"] for h, _ in hook.posts)
    assert delivered == sorted(ids)  # each once: the take is a conditional update


async def test_a_receiver_that_never_answers_well_is_given_up_saying_why(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    settings = make_settings(tmp_path, mongodb_uri, database_name, webhook_private=True,
                             webhook_retry_for="60s")  # fmt: skip
    with receiver(failures=1000) as hook:
        job_id = await ended_job(store, hook.url, state="FAILED")
        # the job ended 59 s ago: the second attempt would fall past webhook_retry_for
        ended = await store.now() - timedelta(seconds=59)
        await store.jobs.update_one({"_id": job_id}, {"$set": {"completed_at": ended}})
        async with notifying(Notifier(store, settings, SECRET, first_delay=5, poll=0.1)):
            job = await notify_state(store, job_id, "failed")
    assert len(hook.posts) == 1
    assert job["notify"]["error"] == "answered 500" and job["notify"]["attempts"] == 1
    assert await store.notices.pending() == 0


async def test_a_loopback_receiver_is_refused_when_the_site_does_not_allow_it(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    settings = make_settings(tmp_path, mongodb_uri, database_name)  # webhook_private: false
    with receiver() as hook:
        job_id = await ended_job(store, hook.url)  # a name resolving to loopback, say
        async with notifying(Notifier(store, settings, SECRET, first_delay=30, poll=0.1)):
            job = await notify_state(store, job_id, "pending")
            await wait_for(lambda: _attempted(store, job_id), 10)
            job = await store.get_job(job_id) or job
    assert hook.posts == []
    assert "not a public address" in job["notify"]["error"]
    assert "webhook_private" in job["notify"]["error"]


async def _attempted(store: Store, job_id: str) -> bool | None:
    job = await store.get_job(job_id)
    return True if job and (job.get("notify") or {}).get("attempts") else None


async def test_the_scheduler_posts_when_a_running_job_ends(
    settings: Settings, store: Store
) -> None:
    with receiver() as hook:
        run = Running(settings, store)
        try:
            service = run.catalogue.services["probe"]
            job_id = await submit(store, service, "sleep", "1", webhook=hook.url)
            job = await store.get_job(job_id)
            assert job is not None and job["notify"] == {"url": hook.url, "state": "pending"}
            await wait_final(store, job_id)
            job = await notify_state(store, job_id, "delivered")
        finally:
            await run.close()
            await run.backend.close()
    assert len(hook.posts) == 1
    assert json.loads(hook.posts[0][1])["status"] == "COMPLETED"
    assert job["notify"]["delivered_at"] >= job["completed_at"]
