"""The email channel's adapter: hands a message to an SMTP server with the standard library.

One connection per message (confirmation mail is rare and must not wait behind a pool): connect
(implicit TLS for ``ssl``), EHLO, STARTTLS when asked (certificates checked against the system's
trust store), log in when a user name is set, send, quit. Every failure becomes a
:class:`DeliveryError` whose message names the server and what went wrong, never the password
nor the message's content.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage

from consentry.config import SmtpSettings
from consentry.delivery.models import DeliveryError, Sent

log = logging.getLogger("consentry.delivery")


class SmtpMailer:
    """A :class:`consentry.delivery.models.Mailer` that talks to one SMTP server."""

    def __init__(self, settings: SmtpSettings, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self._tls = tls_context

    def __repr__(self) -> str:  # the settings' password is a SecretStr: shown as ********
        return f"SmtpMailer({self.settings.host}:{self.settings.port}, {self.settings.security})"

    @property
    def server(self) -> str:
        """``host:port`` of the server, for messages."""
        return f"{self.settings.host}:{self.settings.port}"

    def _context(self) -> ssl.SSLContext:
        return self._tls or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "ssl":
            return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._context())
        return smtplib.SMTP(s.host, s.port, timeout=s.timeout)

    def send(self, message: EmailMessage) -> Sent:
        """Hand ``message`` to the server; DeliveryError unless at least one recipient was
        accepted."""
        s = self.settings
        try:
            with self._connect() as smtp:
                smtp.ehlo()
                if s.security == "starttls":
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if s.username:
                    password = s.password.get_secret_value() if s.password else ""
                    smtp.login(s.username, password)
                refused = smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise self._failure("refused the login", exc, permanent=True) from None
        except smtplib.SMTPRecipientsRefused as exc:
            hard = all(code >= 500 for code, _ in exc.recipients.values())  # 5xx: a bounce
            raise self._failure("refused the recipient", exc, permanent=True, bounce=hard) from None
        except smtplib.SMTPSenderRefused as exc:
            raise self._failure("refused the sender", exc, permanent=True) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self._failure("does not support what was asked", exc, permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:  # connection, TLS, timeouts, 4xx/5xx
            raise self._failure("could not take the message", exc) from None
        message_id = str(message.get("Message-ID", ""))
        log.info("mail %s handed to %s", message_id, self.server)
        return Sent(
            message_id=message_id,
            refused={rcpt: f"{code} {_text(reply)}" for rcpt, (code, reply) in refused.items()},
        )

    def _failure(
        self, what: str, exc: BaseException, *, permanent: bool = False, bounce: bool = False
    ) -> DeliveryError:
        # The log gets the reply code only: a server's text often quotes the recipient address.
        log.warning("SMTP server %s %s (%s)", self.server, what, _code(exc))
        detail = _describe(exc)
        return DeliveryError(
            f"the SMTP server {self.server} {what}: {detail}", permanent=permanent, bounce=bounce
        )


def _text(reply: bytes | str) -> str:
    raw = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(raw.split())[:200]


def _code(exc: BaseException) -> str:
    """The SMTP reply code of a failure, or the kind of error: safe to log."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return ",".join(sorted({str(code) for code, _ in exc.recipients.values()})) or "refused"
    if isinstance(exc, smtplib.SMTPResponseException):
        return str(exc.smtp_code)
    return type(exc).__name__


def _describe(exc: BaseException) -> str:
    """What went wrong, in one short line: the SMTP reply code and text, or the OS error."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({f"{code} {_text(reply)}" for code, reply in exc.recipients.values()})
        return "; ".join(codes) or "refused"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {_text(str(exc))}" if str(exc) else type(exc).__name__
