"""Sending e-mail over SMTP: case alerts, and takedown notices.

One function, :func:`send_mail`, with the standard library's ``smtplib``. STARTTLS and login
are used when configured (``settings.smtp``). Failures become a :class:`MailError` with a
stable code, so callers can retry or report them.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from rempart.errors import RempartError
from rempart.settings import SmtpSettings


class MailError(RempartError):
    """An e-mail could not be sent.

    Codes: ``smtp_not_configured`` (no host), ``bad_address``, ``smtp_unreachable``
    (connection or TLS failed), ``smtp_auth_failed``, ``smtp_refused`` (the server refused
    the sender, a recipient or the message).
    """

    code = "smtp_refused"
    status = 502


def _check_address(address: str) -> str:
    address = address.strip()
    # Header injection: an address is one line. Beyond that, the server is the judge.
    if (
        not address
        or len(address) > 254
        or any(c in address for c in "\r\n\x00,;<>")
        or address.count("@") != 1
    ):
        raise MailError(f"{address!r} is not an e-mail address", code="bad_address")
    return address


def send_mail(
    smtp: SmtpSettings, to: str, subject: str, text: str, html: str | None = None
) -> None:
    """Send one message to ``to`` through ``smtp``; raises :class:`MailError` on failure.

    ``text`` is the plain-text body; ``html``, if given, is added as an alternative.
    """
    if not smtp.host:
        raise MailError(
            "e-mail is not configured (no SMTP host)",
            code="smtp_not_configured",
            hint="set REMPART_SMTP__HOST (and port, sender, credentials)",
        )
    recipient = _check_address(to)
    sender = _check_address(smtp.sender)
    if "\n" in subject or "\r" in subject:
        raise MailError("an e-mail subject is one line", code="bad_message")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[1] or None)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username:
                password = smtp.password.get_secret_value() if smtp.password else ""
                client.login(smtp.username, password)
            client.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(
            f"the SMTP server refused the login ({exc.smtp_code})",
            code="smtp_auth_failed",
            hint="check REMPART_SMTP__USERNAME and REMPART_SMTP__PASSWORD",
        ) from None
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise MailError(
            f"the SMTP server refused an address: {type(exc).__name__}",
            code="smtp_refused",
            hint="check the sender (REMPART_SMTP__SENDER) and the recipient",
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise MailError(
            "the SMTP server does not offer STARTTLS or login",
            code="smtp_unreachable",
            hint="check REMPART_SMTP__STARTTLS and whether the server needs a login",
        ) from None
    except smtplib.SMTPException as exc:
        raise MailError(
            f"the SMTP server refused the message: {type(exc).__name__}", code="smtp_refused"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise MailError(
            f"cannot reach the SMTP server {smtp.host}:{smtp.port}: {exc}",
            code="smtp_unreachable",
            hint="is the server up, and are REMPART_SMTP__HOST and PORT right?",
        ) from None
