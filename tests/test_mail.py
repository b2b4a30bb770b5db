"""E-mail when a job ends (appliance.mail, appliance.mailsend, the notifier): which
addresses are taken and what is sent (fast), and delivery through a real SMTP server
(aiosmtpd, started here on a free port): one message, retried after a temporary
refusal, never again after a permanent one, with STARTTLS as sites use it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email
import ssl
import subprocess
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from appliance.jobrecord import JobRecord
from appliance.mail import MailError, check_address, message
from appliance.scheduler.notifying import Notifier
from appliance.settings import Settings
from appliance.store import Store, new_id
from appliance.submission import record
from tests.helpers import make_settings, wait_for
from tests.test_webhooks import notifying
from tests.web.stack import free_port

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("address", ["ada@example.org", "a.b+tag@mail.example.co.uk", "x_y@e-x.io"])
def test_plain_addresses_are_taken(address: str) -> None:
    assert check_address(f"  {address} ", enabled=True) == address


@pytest.mark.parametrize(
    "address",
    ["ada", "ada@", "@example.org", "ada@example", "a b@example.org", "ada@example.org\nBcc: x@y.org",
     "ada@example.org, bob@example.org", "<ada@example.org>", "a" * 65 + "@example.org"],
)  # fmt: skip
def test_anything_else_is_refused(address: str) -> None:
    with pytest.raises(MailError, match="not an e-mail address"):
        check_address(address, enabled=True)


def test_no_address_is_taken_where_the_site_sends_no_mail() -> None:
    with pytest.raises(MailError, match="no smtp_host"):
        check_address("ada@example.org", enabled=False)


def test_the_message_says_how_the_job_ended_and_where_it_is() -> None:
    ended = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
    job: JobRecord = {
        "_id": "abc123",
        "service": "clustalo",
        "state": "FAILED",
        "error": "exit code 1",
        "completed_at": ended,
    }
    mail = message(job, to="ada@example.org", sender="appliance@example.org",
                   job_url="https://appliance.example.org/api/jobs/abc123", site="lab")  # fmt: skip
    assert mail["Subject"] == "[lab] clustalo job abc123 failed"
    assert (mail["To"], mail["From"]) == ("ada@example.org", "appliance@example.org")
    body = mail.get_content()
    assert "Status: FAILED" in body and "Why: exit code 1" in body
    assert "https://appliance.example.org/api/jobs/abc123" in body


class Inbox:
    """What the SMTP server took; it answers 451 to the first ``refuse`` messages, and
    550 to any recipient at ``refused``."""

    def __init__(self, refuse: int = 0, refused: str = "nobody.example.org") -> None:
        self.messages: list[Message] = []
        self.tries = 0
        self.refuse = refuse
        self.refused = refused

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:  # fmt: skip
        if address.endswith("@" + self.refused):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.tries += 1
        if self.tries <= self.refuse:
            return "451 4.3.0 try again later"
        assert isinstance(envelope.content, bytes)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                  auth_data: Any) -> AuthResult:  # fmt: skip
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"jobs", b"secret-password")  # fmt: skip
    return AuthResult(success=ok)


@contextlib.contextmanager
def smtp_server(inbox: Inbox, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """A real SMTP server on a free port; with ``tls``, STARTTLS and then a login are
    required before any message (as a site's submission server does)."""
    port = free_port()
    secured: dict[str, Any] = {"tls_context": tls, "require_starttls": True,
                               "authenticator": authenticator, "auth_required": True,
                               "auth_require_tls": True} if tls else {}  # fmt: skip
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **secured)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def mail_settings(tmp_path: Path, mongodb_uri: str, database_name: str, port: int,
                  **more: Any) -> Settings:  # fmt: skip
    given: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none",
                             "smtp_from": "jobs@lab.example.org",
                             "public_url": "https://appliance.example.org"}  # fmt: skip
    return make_settings(tmp_path, mongodb_uri, database_name, **(given | more))


async def ended_job(store: Store, to: str, state: str = "COMPLETED") -> str:
    """A job that ended, naming the address ``to``, recorded as submissions are."""
    now = await store.now()
    job: JobRecord = {"_id": new_id(), "kind": "service", "service": "probe", "state": state,
                      "submitted_at": now, "completed_at": now, "parameters": {}, "values": {}}  # fmt: skip
    await record(store, job, None, email=to)
    return str(job["_id"])


async def email_state(store: Store, job_id: str, wanted: str) -> JobRecord:
    async def reached() -> JobRecord | None:
        job = await store.get_job(job_id)
        return job if job and (job.get("notify_email") or {}).get("state") == wanted else None

    found: JobRecord = await wait_for(reached, 20)
    return found


async def test_a_temporary_refusal_is_tried_again_and_one_message_arrives(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    inbox = Inbox(refuse=2)
    with smtp_server(inbox) as port:
        settings = mail_settings(tmp_path, mongodb_uri, database_name, port)
        job_id = await ended_job(store, "ada@example.org")
        async with notifying(Notifier(store, settings, None, first_delay=0.2, poll=0.1)):
            job = await email_state(store, job_id, "delivered")
            await asyncio.sleep(0.5)  # nothing more is sent
    assert inbox.tries == 3 and len(inbox.messages) == 1
    [mail] = inbox.messages
    assert mail["To"] == "ada@example.org" and mail["From"] == "jobs@lab.example.org"
    assert job_id in mail["Subject"] and "completed" in mail["Subject"]
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert f"https://appliance.example.org/api/jobs/{job_id}\n" in body.decode().replace(
        "\r\n", "\n"
    )
    notify = job["notify_email"]
    assert [t["ok"] for t in notify["tries"]] == [False, False, True]
    assert [t.get("status") for t in notify["tries"]] == [451, 451, 250]
    assert "ada@example.org" not in str(job)  # the address went with its notice
    assert await store.notices.pending() == 0


async def test_an_address_the_server_refuses_is_not_tried_again(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        settings = mail_settings(tmp_path, mongodb_uri, database_name, port)
        job_id = await ended_job(store, "ghost@nobody.example.org", state="FAILED")
        async with notifying(Notifier(store, settings, None, first_delay=0.2, poll=0.1)):
            job = await email_state(store, job_id, "failed")
            await asyncio.sleep(0.5)
    notify = job["notify_email"]
    assert (
        notify["attempts"] == 1 and "550" in notify["error"] and "no such user" in notify["error"]
    )
    assert not inbox.messages and await store.notices.pending() == 0


async def test_starttls_with_a_login(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cert, key = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the appliance trusts the test's server
    login = tmp_path / "smtp-login"
    login.write_text("jobs\nsecret-password\n")
    inbox = Inbox()
    with smtp_server(inbox, tls) as port:
        settings = mail_settings(tmp_path, mongodb_uri, database_name, port,
                                 smtp_security="starttls", smtp_credentials_file=str(login))  # fmt: skip
        job_id = await ended_job(store, "ada@example.org")
        async with notifying(Notifier(store, settings, None, first_delay=0.2, poll=0.1)):
            job = await email_state(store, job_id, "delivered")
        assert len(inbox.messages) == 1 and job["notify_email"]["attempts"] == 1
    assert inbox.messages[0]["To"] == "ada@example.org"
