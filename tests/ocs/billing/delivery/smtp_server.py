"""A real SMTP server for the delivery tests: aiosmtpd on a free port of 127.0.0.1, in
its own thread, keeping every message it accepted; ``replies`` scripts what it answers
to RCPT TO (one reply per recipient command, in order; then 250), ``data_replies`` the
same for the end of DATA."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.helpers import get_free_port


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class Sink:
    """What the server saw; ``replies`` the scripted answers to RCPT TO."""

    replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    rcpt_delays: list[float] = field(default_factory=list)
    data_delays: list[float] = field(default_factory=list)
    rcpt_commands: int = 0
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        self.rcpt_commands += 1
        if self.rcpt_delays:
            await asyncio.sleep(self.rcpt_delays.pop(0))
        if self.replies:
            reply = self.replies.pop(0)
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        if self.data_delays:
            await asyncio.sleep(self.data_delays.pop(0))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    sink: Sink


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key, made by ``openssl``."""
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def smtp_server(
    *, password: str | None = None, tls: str | None = None, cert: tuple[Path, Path] | None = None
) -> Iterator[SmtpServer]:
    """The server for the length of the block; ``password``: it requires AUTH with
    any user and that password (over plain TCP: a test server); ``tls``: ``starttls``
    (offered, with ``cert``) or ``ssl`` (TLS from the first byte)."""
    sink = Sink()
    port = get_free_port()
    options: dict[str, object] = {}
    if tls is not None:
        assert cert is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert[0]), str(cert[1]))
        options["tls_context" if tls == "starttls" else "ssl_context"] = context
    if password is not None:

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.password == password.encode()
            if ok:
                sink.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=ok, handled=False)

        options.update(authenticator=authenticate, auth_require_tls=False, auth_required=True)
    controller = Controller(sink, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, sink)
    finally:
        controller.stop()
