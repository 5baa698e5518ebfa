"""An email to send, as a standard MIME message: headers, a plain-text part and an HTML part.

Pure: the standard library's ``email`` package builds the message; nothing here connects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol


class DeliveryError(Exception):
    """A message was not handed to the server. ``permanent`` when trying again will not help
    (the server refused the sender, the recipient, the message or the login with a 5xx reply),
    else a retry may succeed (an SMTP 4xx reply such as greylisting's 451, a lost connection).
    ``bounce`` when the server refused the recipient's address itself for good (a hard bounce)."""

    def __init__(self, message: str, *, permanent: bool = False, bounce: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.bounce = bounce


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """What to say to whom; the sender comes from the settings."""

    to: str
    subject: str
    text: str
    html: str | None  # None: a text/plain message only
    language: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sent:
    """A message the server accepted (for at least one recipient)."""

    message_id: str
    refused: dict[str, str]


class Mailer(Protocol):
    """Hands a built message to a mail server."""

    def send(self, message: EmailMessage) -> Sent:
        """Send ``message``; raise :class:`DeliveryError` when the server did not accept it."""
        ...


def domain_of(address: str) -> str:
    """The domain of an address, for the Message-ID (``localhost`` when there is none)."""
    domain = address.rpartition("@")[2].strip()
    return domain if address.count("@") == 1 and domain else "localhost"


def ascii_address(address: str) -> str:
    """An address as SMTP without the SMTPUTF8 extension carries it: the domain in IDNA
    (``xn--``) form. ValueError when it is not one address or its local part is not ASCII."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or not local.isascii():
        raise ValueError("not a deliverable email address (one address, ASCII before the @)")
    try:
        domain = domain.encode("idna").decode("ascii")
        spec = f"{local}@{domain}"
        parsed = Address(addr_spec=spec)
    except (UnicodeError, ValueError, MessageError) as exc:
        raise ValueError("not a deliverable email address") from exc
    if parsed.addr_spec != spec:
        raise ValueError("not a deliverable email address")
    return spec


def build_message(
    email: OutgoingEmail, *, from_address: str, from_name: str | None, now: datetime | None = None
) -> EmailMessage:
    """A multipart/alternative message (text first, HTML second; text only when there is no
    HTML) with To, From, Subject, Date and Message-ID. Raises ValueError when an address or
    header is not usable."""
    for value in (email.to, from_address, email.subject, from_name or "", *email.headers.values()):
        if "\r" in value or "\n" in value:
            raise ValueError("a header value must be on one line")
    to, sender = ascii_address(email.to), ascii_address(from_address)
    message = EmailMessage()
    message["From"] = Address(display_name=from_name or "", addr_spec=sender)
    message["To"] = to
    message["Subject"] = email.subject
    message["Date"] = format_datetime((now or datetime.now(UTC)).astimezone(UTC))
    message["Message-ID"] = make_msgid(domain=domain_of(sender))
    message.set_content(email.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if email.html is not None:
        message.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if email.language:  # after the content: setting content clears Content-* headers
        message["Content-Language"] = email.language
    for name, value in email.headers.items():
        message[name] = value
    return message
