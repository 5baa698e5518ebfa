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

# What each refusal means; whether it is for good is the reply code's: 4xx (greylisting, a
# full mailbox for now, "try again later": 421, 450, 451, 452, 454) is transient and retried
# with the outbox's back-off, 5xx is permanent (a dead letter; a 5xx on the recipient also
# suppresses the address as a hard bounce).
_REFUSED: dict[type[smtplib.SMTPResponseException], str] = {
    smtplib.SMTPAuthenticationError: "refused the login",
    smtplib.SMTPSenderRefused: "refused the sender",
    smtplib.SMTPDataError: "refused the message",
    smtplib.SMTPConnectError: "refused the connection",
    smtplib.SMTPHeloError: "refused the greeting",
}


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
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            hard = bool(codes) and all(code >= 500 for code in codes)  # 5xx: a bounce
            raise self._failure("refused the recipient", exc, permanent=hard, bounce=hard) from None
        except smtplib.SMTPResponseException as exc:  # the login, the sender, the data, ...
            what = _REFUSED.get(type(exc), "could not take the message")
            raise self._failure(what, exc, permanent=exc.smtp_code >= 500) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self._failure("does not support what was asked", exc, permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:  # connection, TLS, timeouts
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
