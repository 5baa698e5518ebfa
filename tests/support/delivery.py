"""Helpers of the delivery tests: a real local SMTP server (aiosmtpd), a real local HTTP server
that answers webhooks and SMS calls with a chosen status, processors and destinations made
through the public services, subjects made through ingestion and consent recorded through the
ledger."""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from consentry.config import DeliverySettings, SmtpSettings
from consentry.consent import service as consent
from consentry.delivery import destinations, outbox
from consentry.delivery.smtp import SmtpMailer
from consentry.platform.db import Database
from consentry.privacy import processor_service
from consentry.privacy.processors import ProcessorSpec
from tests.support.segment import identify
from tests.support.store import profile_of
from tests.support.store import send as ingest_send

EMAIL_PURPOSE = "marketing.communications.email"
SMS_PURPOSE = "marketing.communications.sms"
FAST = DeliverySettings(
    backoff_base_seconds=60,
    backoff_max_seconds=3600,
    max_attempts=3,
    circuit_threshold=3,
    circuit_pause_seconds=600,
    per_destination_cap=50,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- SMTP ---------------------------------------------------------------------------------------


class MailSink:
    """An aiosmtpd handler keeping every message it accepted; recipients starting with
    ``bounce`` are refused for good (550), ``later`` for now (451), and ``grey`` are greylisted:
    answered with the code in ``greylist`` (451 unless set) the first ``greylist_times`` times
    they are tried, then accepted."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.lock = threading.Lock()
        self.greylist = "451 4.7.1"
        self.greylist_times = 1
        self.tries: dict[str, int] = {}

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        with self.lock:
            self.tries[address] = self.tries.get(address, 0) + 1
            tried = self.tries[address]
        if address.startswith("bounce"):
            return f"550 5.1.1 <{address}>: no such user"
        if address.startswith("later"):
            return f"451 4.7.1 <{address}>: try again later"
        if address.startswith("grey") and tried <= self.greylist_times:
            return f"{self.greylist} <{address}>: greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        with self.lock:
            self.received.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            raw = [e.content for e in self.received]
        return [
            email.message_from_bytes(
                r if isinstance(r, bytes) else str(r).encode(), policy=email.policy.default
            )  # type: ignore[misc]
            for r in raw
        ]


@contextmanager
def smtp_server() -> Iterator[tuple[MailSink, SmtpMailer]]:
    """A local SMTP server and a mailer that talks to it."""
    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, SmtpMailer(SmtpSettings(host="127.0.0.1", port=port, timeout=5))
    finally:
        controller.stop()


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HookServer:
    """What the local HTTP server received, and the status each path answers with (200 unless
    set; a list is answered in turn, its last status repeating)."""

    base: str
    received: list[Received] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def answer(self, path: str, *statuses: int) -> None:
        with self.lock:
            self.statuses[path] = list(statuses)

    def to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def _status(self, path: str) -> int:
        with self.lock:
            queue = self.statuses.get(path)
            if not queue:
                return 200
            return queue.pop(0) if len(queue) > 1 else queue[0]


@contextmanager
def hook_server() -> Iterator[HookServer]:
    """A real HTTP server in a thread, recording every POST."""
    state = HookServer(base="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with state.lock:
                state.received.append(Received(self.path, dict(self.headers), body))
            status = state._status(self.path)
            payload = json.dumps({"id": f"prov-{len(state.received)}"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args: Any) -> None:  # quiet
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# --- the store ----------------------------------------------------------------------------------


def processor(
    db: Database,
    workspace: str,
    name: str = "Mailer",
    *,
    purposes: tuple[str, ...] = (EMAIL_PURPOSE, SMS_PURPOSE),
    categories: tuple[str, ...] = ("user.contact", "user.name", "user.unique_id"),
) -> str:
    spec = ProcessorSpec(
        name=name,
        kind="processor",
        transfer_country="DE",
        purposes=purposes,
        categories=categories,
        dpa_signed_on=date(2024, 1, 10),
    )
    with db.write() as session:
        made = processor_service.register_processor(
            session=session, workspace_id=workspace, spec=spec, actor="test:delivery"
        )
    return made.id


def destination(
    db: Database,
    workspace: str,
    processor_id: str,
    *,
    name: str = "Newsletter",
    kind: str = "email",
    purpose: str = EMAIL_PURPOSE,
    url: str | None = None,
    categories: tuple[str, ...] = (),
    channel: str | None = None,
) -> destinations.Registered:
    spec = destinations.DestinationSpec(
        name=name,
        kind=kind,
        processor_id=processor_id,
        purpose=purpose,
        url=url,
        categories=categories,
        channel=channel,
    )
    with db.write() as session:
        return destinations.register_destination(
            session=session, workspace_id=workspace, spec=spec, actor="test:delivery"
        )


def webhook(
    db: Database,
    workspace: str,
    url: str,
    *,
    name: str,
    processor_id: str | None = None,
    purpose: str = EMAIL_PURPOSE,
) -> destinations.Registered:
    """A webhook destination declaring ``user.unique_id``, through a processor of its own
    unless ``processor_id`` names one."""
    return destination(
        db,
        workspace,
        processor_id or processor(db, workspace),
        name=name,
        kind="webhook",
        purpose=purpose,
        url=url,
        categories=("user.unique_id",),
    )


def person(db: Database, workspace: str, user_id: str, **traits: Any) -> str:
    """A unified profile made through ingestion."""
    ingest_send(db, workspace, identify(userId=user_id, traits=traits))
    return profile_of(db, workspace, user_id=user_id).id


def grant(
    db: Database,
    workspace: str,
    profile_id: str,
    *,
    purpose: str = EMAIL_PURPOSE,
    channel: str = "email",
    state: str = "granted",
) -> None:
    with db.write() as session:
        consent.record(
            session=session,
            workspace_id=workspace,
            profile_id=profile_id,
            purpose=purpose,
            channel=channel,
            state=state,
            source="web_form",
            actor="test",
        )


def mail(
    db: Database,
    workspace: str,
    destination_id: str,
    key: str,
    *,
    to: str,
    subject_id: str | None,
    purpose: str | None = EMAIL_PURPOSE,
    headers: dict[str, str] | None = None,
    subject: str = "Hello",
) -> str | None:
    with db.write() as session:
        return outbox.enqueue(
            session=session,
            workspace_id=workspace,
            destination_id=destination_id,
            key=key,
            subject_id=subject_id,
            purpose=purpose,
            channel="email",
            to=to,
            content={
                "subject": subject,
                "text": "Your cart misses you.",
                "html": "<p>Your cart misses you.</p>",
                "headers": headers or {},
            },
            origin="journey:test:mail",
        )


def hook(
    db: Database,
    workspace: str,
    destination_id: str,
    key: str,
    body: Any,
    *,
    subject_id: str | None = None,
    purpose: str | None = None,
    channel: str = "any",
) -> str | None:
    with db.write() as session:
        return outbox.enqueue(
            session=session,
            workspace_id=workspace,
            destination_id=destination_id,
            key=key,
            subject_id=subject_id,
            purpose=purpose,
            channel=channel,
            to=None,
            content={"body": body},
            origin="export:test",
        )


def status_of(db: Database, workspace: str, message_id: str) -> outbox.OutboxMessage:
    with db.read() as session:
        return outbox.get_message(session=session, workspace_id=workspace, message_id=message_id)
