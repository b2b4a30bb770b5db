"""E-mail when a job ends: the pure part (which addresses are taken, what is sent).

A job may name one address (the form field ``_email``, the TES tag ``appliance-email``)
when the site has an SMTP server (``smtp_host``). The scheduler sends one message when
the job ends (``appliance.scheduler.notifying``), through the site's server only; the
address is never shown back by the API, which says only how the sending went.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from appliance.jobrecord import JobRecord

FIELD = "_email"  # the form field that names the address
TAG = "appliance-email"  # the TES tag that does
MAX_LENGTH = 254  # RFC 5321's longest path
# One plain address: a local part of the usual characters, a domain of dotted labels.
ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
WORDS = {"COMPLETED": "completed", "FAILED": "failed", "ERROR": "ended in an error",
         "INTERRUPTED": "was interrupted", "DELETED": "was cancelled"}  # fmt: skip


class MailError(ValueError):
    """An address that is not taken, or a message that could not be sent."""


def check_address(text: str, *, enabled: bool) -> str:
    """``text`` as the one address a job may name; MailError saying why not."""
    if not enabled:
        raise MailError("this site sends no e-mail (no smtp_host is set)")
    address = text.strip()
    if len(address) > MAX_LENGTH or not ADDRESS.fullmatch(address):
        raise MailError(f"not an e-mail address: {address[:80]!r} (one address, name@domain)")
    return address


def message(job: JobRecord, *, to: str, sender: str, job_url: str, site: str) -> EmailMessage:
    """The message that tells ``to`` that ``job`` ended."""
    state = str(job.get("state") or "")
    what = job.get("service") or ("task" if job.get("kind") == "task" else "job")
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = f"[{site}] {what} job {job['_id']} {WORDS.get(state, state.lower())}"
    mail["Message-ID"] = make_msgid(idstring=str(job["_id"]), domain=sender.rpartition("@")[2])
    if (ended := job.get("completed_at")) is not None:
        mail["Date"] = format_datetime(ended)
    lines = [f"Your {what} job {job['_id']} {WORDS.get(state, state.lower())}.", "",
             f"Status: {state}"]  # fmt: skip
    if job.get("error"):
        lines.append(f"Why: {job['error']}")
    lines += ["", "Its results and details:", job_url, "",
              "(You asked to be told when it ends. This address is not kept after this.)"]  # fmt: skip
    mail.set_content("\n".join(lines) + "\n")
    return mail
