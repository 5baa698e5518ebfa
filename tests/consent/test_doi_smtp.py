"""The SMTP adapter (delivery/smtp.py) against a real local server (aiosmtpd): plain, STARTTLS
and implicit TLS with a certificate made for the test, login, refusals and an unreachable
server. The password never reaches a message, a log line or a repr."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from consentry.config import Settings, SmtpSettings
from consentry.delivery.models import DeliveryError, OutgoingEmail, build_message
from consentry.delivery.smtp import SmtpMailer

PASSWORD = "s3cret-Pa55word"


class Handler:
    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.startswith("refuse"):
            return f"550 5.1.1 <{address}>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK"


def check_password(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"shop"
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made for these tests."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def start(handler: Handler, port: int, **kwargs: Any) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture
def plain(handler: Handler) -> Iterator[int]:
    port = free_port()
    controller = start(
        handler, port, auth_require_tls=False, authenticator=check_password, auth_required=False
    )
    yield port
    controller.stop()


@pytest.fixture
def starttls(handler: Handler, certificate: tuple[Path, Path]) -> Iterator[int]:
    port = free_port()
    controller = start(
        handler,
        port,
        tls_context=server_context(certificate),
        require_starttls=True,
        authenticator=check_password,
        auth_required=True,
    )
    yield port
    controller.stop()


@pytest.fixture
def implicit_tls(handler: Handler, certificate: tuple[Path, Path]) -> Iterator[int]:
    port = free_port()
    controller = start(
        handler,
        port,
        ssl_context=server_context(certificate),
        authenticator=check_password,
        auth_require_tls=False,  # aiosmtpd only counts STARTTLS as TLS; this socket is TLS
    )
    yield port
    controller.stop()


def message(to: str = "ada@example.com") -> Any:
    outgoing = OutgoingEmail(to=to, subject="Confirm", text="Hello\n", html="<p>Hello</p>\n")
    return build_message(outgoing, from_address="hello@shop.example", from_name="Shop")


def test_plain_send_without_login(plain: int, handler: Handler) -> None:
    sent = SmtpMailer(SmtpSettings(host="127.0.0.1", port=plain, timeout=5)).send(message())
    assert sent.message_id.endswith("@shop.example>") and sent.refused == {}
    (envelope,) = handler.received
    assert (envelope.mail_from, envelope.rcpt_tos) == ("hello@shop.example", ["ada@example.com"])


def test_starttls_with_login(
    starttls: int, handler: Handler, certificate: tuple[Path, Path]
) -> None:
    settings = SmtpSettings(
        host="127.0.0.1",
        port=starttls,
        security="starttls",
        username="shop",
        password=SecretStr(PASSWORD),
        timeout=5,
    )
    SmtpMailer(settings, client_context(certificate)).send(message())
    assert len(handler.received) == 1


def test_implicit_tls_with_login(
    implicit_tls: int, handler: Handler, certificate: tuple[Path, Path]
) -> None:
    settings = SmtpSettings(
        host="127.0.0.1",
        port=implicit_tls,
        security="ssl",
        username="shop",
        password=SecretStr(PASSWORD),
        timeout=5,
    )
    SmtpMailer(settings, client_context(certificate)).send(message())
    assert len(handler.received) == 1


def test_an_untrusted_certificate_is_refused(starttls: int, handler: Handler) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=starttls, security="starttls", timeout=5)
    with pytest.raises(DeliveryError) as caught:
        SmtpMailer(settings).send(message())  # the system's trust store knows no test CA
    assert not caught.value.permanent
    assert handler.received == []


def test_a_wrong_password_is_a_permanent_failure_that_never_shows_the_password(
    plain: int, handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    settings = SmtpSettings(
        host="127.0.0.1",
        port=plain,
        username="shop",
        password=SecretStr("wrong-" + PASSWORD),
        timeout=5,
    )
    mailer = SmtpMailer(settings)
    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError) as caught:
        mailer.send(message())
    assert caught.value.permanent and "refused the login" in caught.value.message
    shown = [caught.value.message, repr(mailer), repr(settings), caplog.text]
    shown.append(repr(Settings(environment="test", smtp=settings)))
    assert not any(PASSWORD in text for text in shown), shown
    assert handler.received == []


def test_a_refused_recipient_is_permanent_and_kept_out_of_the_log(
    plain: int, caplog: pytest.LogCaptureFixture
) -> None:
    mailer = SmtpMailer(SmtpSettings(host="127.0.0.1", port=plain, timeout=5))
    with caplog.at_level(logging.DEBUG, logger="consentry"), pytest.raises(DeliveryError) as caught:
        mailer.send(message("refuse-me@example.com"))
    assert caught.value.permanent and "550" in caught.value.message
    assert "refuse-me" not in caplog.text and "550" in caplog.text


def test_an_unreachable_server_is_a_temporary_failure() -> None:
    port = free_port()  # nothing listens there
    mailer = SmtpMailer(SmtpSettings(host="127.0.0.1", port=port, timeout=2))
    with pytest.raises(DeliveryError) as caught:
        mailer.send(message())
    assert not caught.value.permanent
    assert f"127.0.0.1:{port}" in caught.value.message
    assert "connection refused" in caught.value.message
