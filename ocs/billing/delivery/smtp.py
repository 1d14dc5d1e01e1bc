"""E-mail of an invoice through an SMTP server (``[smtp]`` settings).

:func:`invoice_message` makes the message: a short text body with what is due and by
when, the HTML document as its alternative, the PDF attached (``INV-000042.pdf``),
``Subject: Invoice INV-000042 from <operator>``, and the ``Message-ID`` that the
delivery recorded before sending (so the mail server's log can be searched for it).

:class:`Mailer` keeps one SMTP session for a whole run (plain, STARTTLS or implicit
TLS; AUTH when a user is set) and says what a failure means (:class:`SendFailure`):

* ``temporary``: a 4xx reply, or no usable server (connection refused or lost, a
  timeout, TLS or AUTH refused): the delivery is tried again later;
* permanent: a 5xx reply to this message (recipient or content refused): the
  delivery failed, with the server's reply as the reason;
* ``server``: the failure is the server's or ours, not this message's (nothing else
  can be sent in this run either): the step stops sending e-mail until the next run;
* ``uncertain``: the connection failed (lost, timed out) after the whole message and
  its final "." were sent, before the server's reply: the server may have accepted it
  (a slow content scan, a reply lost), so it must not be sent again by itself.

That is why :meth:`Mailer.send` drives the transaction itself (MAIL, RCPT, DATA, the
message, the reply) rather than ``smtplib.SMTP.send_message``: a connection lost before
the last byte of the message left is a temporary failure (tried again), after it it is
``uncertain``.
"""

from __future__ import annotations

import email.policy
import io
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses
from pathlib import Path

__all__ = ["SECURITIES", "Mailer", "SendFailure", "SmtpConfig", "invoice_message"]

SECURITIES = ("starttls", "ssl", "none")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to send. ``password`` or ``password_file`` (read at each
    connection, so a rotated secret is picked up), never shown (``repr`` hides it)."""

    host: str
    port: int = 587
    security: str = "starttls"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    sender: str = "billing@ocs.localdomain"
    timeout: float = 30.0

    def secret(self) -> str | None:
        """The password; OSError when its file cannot be read."""
        if self.password_file is not None:
            return Path(self.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        return self.password


class SendFailure(Exception):
    """A message was not accepted, or may not have been (module doc: ``temporary``,
    ``server``, ``uncertain``)."""

    def __init__(
        self, reason: str, *, temporary: bool, server: bool, uncertain: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary
        self.server = server
        self.uncertain = uncertain


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"[:500]


def _flatten(message: EmailMessage) -> bytes:
    """The message as it goes after DATA: CRLF lines, a line starting with "." doubled,
    ended by the lone "." (what ``smtplib.SMTP.data`` sends, sent here by hand so that
    a failure before and after the last byte are told apart)."""
    buffer = io.BytesIO()
    BytesGenerator(buffer, policy=email.policy.SMTP).flatten(message, linesep="\r\n")
    body = re.sub(rb"(?m)^\.", b"..", buffer.getvalue())
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def _by_code(code: int, reason: str, *, server: bool = False) -> SendFailure:
    # 4xx: try again later; 5xx (and anything else): this message will never go
    return SendFailure(reason, temporary=400 <= code < 500, server=server)


class Mailer:
    """One SMTP session, opened at the first message, closed by :meth:`close`."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        c = self.config
        try:
            password = c.secret() if c.user is not None else None
        except OSError as error:
            raise SendFailure(
                f"smtp.secret_file {c.password_file}: {error.strerror or error}",
                temporary=True, server=True,
            ) from None  # fmt: skip
        try:
            smtp: smtplib.SMTP
            if c.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    c.host, c.port, timeout=c.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
            try:
                smtp.ehlo()
                if c.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if c.user is not None:
                    smtp.login(c.user, password or "")
            except BaseException:
                smtp.close()
                raise
        except smtplib.SMTPNotSupportedError as error:
            raise SendFailure(
                f"SMTP server {c.host}:{c.port}: {error} (smtp.security = {c.security!r})",
                temporary=True, server=True,
            ) from None  # fmt: skip
        except smtplib.SMTPAuthenticationError as error:
            raise SendFailure(
                f"SMTP server {c.host}:{c.port} refused the login of {c.user!r}: "
                f"{_reply(error.smtp_code, error.smtp_error)}",
                temporary=True, server=True,
            ) from None  # fmt: skip
        except smtplib.SMTPResponseException as error:
            raise SendFailure(
                f"SMTP server {c.host}:{c.port}: {_reply(error.smtp_code, error.smtp_error)}",
                temporary=True, server=True,
            ) from None  # fmt: skip
        except (OSError, smtplib.SMTPException) as error:
            raise SendFailure(
                f"SMTP server {c.host}:{c.port} unreachable: {error or type(error).__name__}",
                temporary=True, server=True,
            ) from None  # fmt: skip
        return smtp

    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the server; :class:`SendFailure` when it is not accepted
        (``uncertain`` when the connection failed after the whole message was sent)."""
        if self._smtp is None:
            self._smtp = self._open()
        smtp = self._smtp
        recipients = [address for _, address in getaddresses(message.get_all("To", []))]
        data = _flatten(message)
        try:
            self._envelope(smtp, recipients, data)
            code, text = smtp.docmd("data")
        except smtplib.SMTPResponseException as error:  # 421 (closing) and the like
            self.close()
            raise _by_code(
                error.smtp_code, _reply(error.smtp_code, error.smtp_error), server=True
            ) from None
        except (OSError, smtplib.SMTPException) as error:
            self.close()
            raise SendFailure(
                f"SMTP connection lost: {error or type(error).__name__}",
                temporary=True, server=True,
            ) from None  # fmt: skip
        if code != 354:
            self._reset(code)
            raise _by_code(code, f"message refused: {_reply(code, text)}")
        try:  # the message: once it is all out, the server may accept it at any moment
            smtp.send(data)
        except (OSError, smtplib.SMTPException) as error:  # the final "." never left
            self.close()
            raise SendFailure(
                f"SMTP connection lost while sending the message: {error or type(error).__name__}",
                temporary=True, server=True,
            ) from None  # fmt: skip
        try:
            code, text = smtp.getreply()
        except (OSError, smtplib.SMTPException) as error:
            self.close()
            raise SendFailure(
                "interrupted: the SMTP connection failed after the whole message was sent, "
                f"before the server answered ({error or type(error).__name__}); the server may "
                f"have accepted it (Message-ID {message['Message-ID']})",
                temporary=False, server=True, uncertain=True,
            ) from None  # fmt: skip
        if code != 250:
            self._reset(code)
            raise _by_code(code, f"message refused: {_reply(code, text)}")

    def _envelope(self, smtp: smtplib.SMTP, recipients: list[str], data: bytes) -> None:
        """MAIL FROM and RCPT TO (nothing can have been delivered yet when they fail):
        :class:`SendFailure` for a refusal, smtplib's errors for a lost connection."""
        smtp.ehlo_or_helo_if_needed()
        options: list[str] = []
        if smtp.does_esmtp and smtp.has_extn("size"):
            options.append(f"size={len(data)}")
        code, text = smtp.mail(self.config.sender, options)
        if code != 250:
            # our from address: every message would be refused the same way
            self._reset(code)
            raise SendFailure(
                f"sender {self.config.sender} refused: {_reply(code, text)}",
                temporary=True, server=True,
            )  # fmt: skip
        for recipient in recipients:
            code, text = smtp.rcpt(recipient)
            if code not in (250, 251):
                self._reset(code)
                raise _by_code(code, f"recipient refused: {_reply(code, text)}")

    def _reset(self, code: int) -> None:
        """After a refusal: the session ready for the next message (RSET), or closed
        when the server is closing it (421) or cannot be reset."""
        smtp = self._smtp
        if smtp is None:
            return
        if code == 421:
            self.close()
            return
        try:
            smtp.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def invoice_message(
    *,
    sender: str,
    operator: str,
    recipient: str,
    name: str | None,
    number: str,
    message_id: str,
    text: str,
    html: str,
    pdf: bytes,
    at: int,
) -> EmailMessage:
    """The e-mail of invoice ``number`` (module doc). ValueError for a ``recipient``
    that is not ASCII (an internationalised address needs SMTPUTF8: not supported)."""
    if not recipient.isascii():
        # the address itself stays out of the reason, which is logged (the delivery's
        # row keeps the recipient)
        raise ValueError(
            "the recipient's e-mail address is not ASCII: internationalised addresses "
            "(SMTPUTF8) are not supported"
        )
    message = EmailMessage()
    message["From"] = formataddr((operator, sender))
    message["To"] = formataddr((name or "", recipient))
    message["Subject"] = f"Invoice {number} from {operator}"
    message["Date"] = formatdate(at, usegmt=True)
    message["Message-ID"] = message_id
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{number}.pdf")
    return message
