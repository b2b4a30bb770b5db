"""Sending one e-mail through the site's SMTP server (``smtp_*`` settings): the only
module that speaks SMTP. Blocking (smtplib): the scheduler calls it in a thread."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from appliance.settings import Settings


def _login(settings: Settings) -> tuple[str, str] | None:
    path = settings.smtp_credentials_file
    if path is None:
        return None
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise smtplib.SMTPException(f"cannot read smtp_credentials_file: {exc.strerror}") from None
    if len(lines) != 2:
        raise smtplib.SMTPException("smtp_credentials_file holds two lines: user, then password")
    return lines[0], lines[1]


def send(settings: Settings, mail: EmailMessage) -> tuple[int | None, str, bool]:
    """Send ``mail``: (the server's last code, "" or what went wrong, whether trying
    again may help). A 5xx answer (an unknown recipient) is not tried again."""
    context = ssl.create_default_context()
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.smtp_timeout
    try:
        login = _login(settings)
        if settings.smtp_security == "tls":
            server: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            server = smtplib.SMTP(host, port, timeout=timeout)
        with server:
            if settings.smtp_security == "starttls":
                server.starttls(context=context)
            if login is not None:
                server.login(*login)
            server.send_message(mail)
    except smtplib.SMTPRecipientsRefused as exc:
        code, said = next(iter(exc.recipients.values()))
        return code, f"the SMTP server refused the address: {code} {_text(said)}", code < 500
    except smtplib.SMTPResponseException as exc:
        code = exc.smtp_code
        return code, f"the SMTP server answered {code} {_text(exc.smtp_error)}", code < 500
    except (smtplib.SMTPException, OSError) as exc:
        return None, f"{host}:{port}: {exc.__class__.__name__}: {exc}", True
    return 250, "", False


def _text(said: bytes | str) -> str:
    return said.decode(errors="replace") if isinstance(said, bytes) else said
