"""E-mail delivery of final invoices to a real SMTP server (aiosmtpd on a free port):
the message with its PDF, retries of temporary failures, permanent failures with the
server's reply, an unreachable server, once and only once whatever runs twice or dies."""

from __future__ import annotations

import io
import logging
import shutil
from dataclasses import replace
from email.message import EmailMessage

import pypdf
import pytest
from sqlalchemy import select

from ocs.billing.accounts import Contact
from ocs.billing.delivery import store
from ocs.billing.delivery.run import DeliveryOptions, deliver, resend
from ocs.billing.delivery.smtp import Mailer, SmtpConfig
from ocs.billing.delivery.status import delivery_status_of
from ocs.billing.lifecycle import DocumentNotFound, InvalidState, void
from ocs.billing.schema import invoice_deliveries
from tests.helpers import get_free_port
from tests.ocs.billing.delivery.smtp_server import self_signed, smtp_server
from tests.ocs.billing.documents.builders import (
    ERIKA,
    NOVEMBER_DONE,
    OPERATOR,
    Billed,
    bill,
    single,
    usage,
)
from tests.ocs.billing.factory import account

NOW = NOVEMBER_DONE + 3600
# the test server takes AUTH over plain TCP (aiosmtpd warns: a real one must not)
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
NBSP = "\xa0"


def accounts_of(billed: Billed):
    def read(ids):
        known = {a.id: a for a in billed.accounts if a.id in ids}
        return (
            {a.id: a.contact for a in known.values()},
            {a.id: a.partition for a in known.values()},
            "Europe/Berlin",
        )

    return read


def options(server=None, **changes) -> DeliveryOptions:
    smtp = None
    if server is not None:
        smtp = SmtpConfig(
            host=server.host, port=server.port, security="none",
            sender="billing@beispiel.example", timeout=5,
        )  # fmt: skip
    made = DeliveryOptions(operator=OPERATOR, smtp=smtp, max_attempts=3, retry_delay=60)
    return replace(made, **changes)


def rows(billed: Billed) -> list:
    with billed.engine.connect() as connection:
        return list(
            connection.execute(select(invoice_deliveries).order_by(invoice_deliveries.c.id))
        )


def pdf_text(body: bytes) -> str:
    pages = pypdf.PdfReader(io.BytesIO(body)).pages
    return "\n".join(page.extract_text().replace(NBSP, " ") for page in pages)


@pytest.fixture
def server():
    with smtp_server() as running:
        yield running


@pytest.fixture
def billed(tmp_path) -> Billed:
    return single(tmp_path, records=3, finalize=True)


def test_a_final_invoice_is_mailed_with_its_pdf_attached(billed, server):
    summary = deliver(billed.engine, options(server, records_directory=billed.records),
                      accounts_of(billed), now=NOW)  # fmt: skip
    assert (summary.planned, summary.sent, summary.errors) == (1, 1, [])
    [received] = server.sink.received
    assert received.recipients == ["erika@example.de"]
    assert received.envelope_from == "billing@beispiel.example"
    message = received.message
    assert message["Subject"] == "Invoice INV-000001 from Beispiel Telekom GmbH"
    assert message["To"] == "Erika Mustermann <erika@example.de>"
    [row] = rows(billed)
    assert message["Message-ID"] == row.message_id
    assert (row.state, row.attempts, row.sent_at, row.recipient) == (
        "sent", 1, NOW, "erika@example.de",
    )  # fmt: skip
    body = message.get_body(preferencelist=("plain",)).get_content().replace(NBSP, " ")
    assert "INV-000001" in body and "Amount due: 24,03 € by 24.12.2026." in body
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Erika Mustermann" in html and "INV-000001" in html
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "INV-000001.pdf"
    text = pdf_text(attachment.get_content())
    assert "Rechnung" in text or "Invoice INV-000001" in text
    assert "Erika Mustermann" in text and "24,03 €" in text
    # the itemised pages came from the segment files
    assert "Itemised usage" in text


def test_running_the_step_twice_sends_once(billed, server):
    for _ in range(2):
        deliver(billed.engine, options(server), accounts_of(billed), now=NOW)
    assert len(server.sink.received) == 1 and server.sink.rcpt_commands == 1
    assert [row.state for row in rows(billed)] == ["sent"]
    later = deliver(billed.engine, options(server), accounts_of(billed), now=NOW + 86_400)
    assert (later.planned, later.sent) == (0, 0) and len(server.sink.received) == 1


def test_a_temporary_refusal_is_retried_after_the_back_off(billed, server):
    server.sink.replies = ["451 4.3.0 Mailbox temporarily unavailable"]
    first = deliver(billed.engine, options(server), accounts_of(billed), now=NOW)
    assert (first.sent, first.retrying, first.errors) == (0, 1, [])
    [row] = rows(billed)
    assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 1, NOW + 60)
    assert "451 4.3.0 Mailbox temporarily unavailable" in row.last_error
    # not due yet: nothing is tried
    deliver(billed.engine, options(server), accounts_of(billed), now=NOW + 59)
    assert server.sink.rcpt_commands == 1
    second = deliver(billed.engine, options(server), accounts_of(billed), now=NOW + 60)
    assert second.sent == 1
    [row] = rows(billed)
    assert (row.state, row.attempts, row.last_error) == ("sent", 2, None)
    assert len(server.sink.received) == 1


def test_temporary_failures_give_up_after_the_last_attempt(billed, server):
    server.sink.replies = ["452 4.2.2 Mailbox full"] * 5
    at = NOW
    for _ in range(3):
        deliver(billed.engine, options(server), accounts_of(billed), now=at)
        at += 86_400  # past every back-off (60, 120, ...)
    [row] = rows(billed)
    assert (row.state, row.attempts) == ("failed", 3)
    assert row.last_error.startswith("gave up after 3 attempts: recipient refused: 452 4.2.2")
    deliver(billed.engine, options(server), accounts_of(billed), now=at + 86_400)
    assert server.sink.rcpt_commands == 3 and server.sink.received == []


def test_a_permanent_refusal_fails_with_the_reason_and_is_not_retried(billed, server):
    server.sink.replies = ["550 5.1.1 <erika@example.de>: no such user"]
    summary = deliver(billed.engine, options(server), accounts_of(billed), now=NOW)
    assert (summary.failed, summary.retrying) == (1, 0)
    [row] = rows(billed)
    assert row.state == "failed" and row.sent_at is None
    assert row.last_error == "recipient refused: 550 5.1.1 <erika@example.de>: no such user"
    for days in (1, 10):
        deliver(billed.engine, options(server), accounts_of(billed), now=NOW + days * 86_400)
    assert server.sink.rcpt_commands == 1


def test_a_message_refused_at_data_is_failed_and_a_4xx_there_retried(billed, server):
    server.sink.data_replies = ["451 4.7.1 Greylisted", "554 5.6.0 Message refused"]
    deliver(billed.engine, options(server), accounts_of(billed), now=NOW)
    [row] = rows(billed)
    assert row.state == "pending" and "451 4.7.1 Greylisted" in row.last_error
    deliver(billed.engine, options(server), accounts_of(billed), now=NOW + 60)
    [row] = rows(billed)
    assert row.state == "failed" and row.last_error == "message refused: 554 5.6.0 Message refused"
    assert server.sink.received == []


def test_a_refused_connection_is_retried_and_the_rest_wait(tmp_path):
    billed = bill(
        tmp_path,
        [account("erika", contact=ERIKA), account("max", contact=replace(ERIKA, email="m@x.de"))],
        usage("erika", 2) + usage("max", 2),
        finalize=True,
    )
    port = get_free_port()  # nothing listens there
    smtp = SmtpConfig(host="127.0.0.1", port=port, security="none", timeout=5)
    summary = deliver(billed.engine, options(smtp=smtp), accounts_of(billed), now=NOW)
    assert summary.retrying == 1 and summary.waiting == 1 and summary.sent == 0
    [reason] = summary.errors
    assert f"SMTP server 127.0.0.1:{port} unreachable" in reason and "refused" in reason
    first, second = rows(billed)
    assert (first.state, first.attempts, first.next_attempt_at) == ("pending", 1, NOW + 60)
    assert (second.state, second.attempts) == ("pending", 0)  # never tried: not counted
    with smtp_server() as server:
        later = replace(smtp, port=server.port)
        summary = deliver(billed.engine, options(smtp=later), accounts_of(billed), now=NOW + 60)
        assert summary.sent == 2 and len(server.sink.received) == 2


def test_starttls_that_the_server_does_not_offer_is_a_server_error(billed, server):
    smtp = replace(options(server).smtp, security="starttls")
    summary = deliver(billed.engine, options(smtp=smtp), accounts_of(billed), now=NOW)
    [reason] = summary.errors
    assert "STARTTLS" in reason and "smtp.security = 'starttls'" in reason
    assert rows(billed)[0].state == "pending" and server.sink.received == []


def test_login_with_the_password_from_a_file(billed, tmp_path):
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret-pass\n")
    with smtp_server(password="s3cret-pass") as server:
        smtp = replace(options(server).smtp, user="ocs", password_file=str(secret))
        assert "s3cret" not in repr(smtp)
        summary = deliver(billed.engine, options(smtp=smtp), accounts_of(billed), now=NOW)
        assert summary.sent == 1 and server.sink.logins == [("ocs", "s3cret-pass")]


def test_a_refused_login_leaves_the_invoice_pending(billed):
    with smtp_server(password="right") as server:
        smtp = replace(options(server).smtp, user="ocs", password="wrong")
        summary = deliver(billed.engine, options(smtp=smtp), accounts_of(billed), now=NOW)
    [reason] = summary.errors
    assert "refused the login of 'ocs': 535" in reason and "wrong" not in reason
    assert rows(billed)[0].state == "pending"


def test_an_unreadable_password_file_is_a_server_error(billed, server, tmp_path):
    smtp = replace(options(server).smtp, user="ocs", password_file=str(tmp_path / "none"))
    summary = deliver(billed.engine, options(smtp=smtp), accounts_of(billed), now=NOW)
    assert summary.errors == [f"smtp.secret_file {tmp_path / 'none'}: No such file or directory"]
    assert rows(billed)[0].state == "pending"


def test_an_account_without_an_e_mail_address_fails_with_the_reason(tmp_path, server):
    billed = single(tmp_path, records=1, finalize=True, contact=replace(ERIKA, email=None))
    summary = deliver(billed.engine, options(server), accounts_of(billed), now=NOW)
    assert summary.failed == 0 and summary.planned == 1  # failed when planned
    [row] = rows(billed)
    assert row.state == "failed" and row.attempts == 0
    assert row.last_error == "the account wants e-mail but has no e-mail address"
    assert server.sink.rcpt_commands == 0


def test_an_account_gone_from_the_accounts_fails_with_the_reason(billed, server):
    summary = deliver(billed.engine, options(server), lambda ids: ({}, {}, "UTC"), now=NOW)
    [row] = rows(billed)
    assert summary.planned == 1 and row.state == "failed"
    assert row.last_error == "the account no longer exists (no contact to deliver to)"


def test_an_e_mail_address_removed_after_planning_fails_at_sending(billed, server):
    deliver(billed.engine, options(), accounts_of(billed), now=NOW)  # no SMTP: planned only
    gone = Billed(billed.engine, billed.records,
                  [replace(billed.accounts[0], contact=Contact(name="Erika"))])  # fmt: skip
    summary = deliver(billed.engine, options(server), accounts_of(gone), now=NOW)
    [row] = rows(billed)
    assert summary.failed == 1 and row.state == "failed" and row.attempts == 1
    assert "no e-mail address" in row.last_error


def test_without_smtp_settings_e_mail_deliveries_wait(billed):
    summary = deliver(billed.engine, options(), accounts_of(billed), now=NOW)
    assert (summary.planned, summary.waiting, summary.sent) == (1, 1, 0)
    assert rows(billed)[0].state == "pending"


def test_a_document_that_cannot_be_made_fails_that_delivery(billed, server, tmp_path):
    broken = replace(OPERATOR, logo=tmp_path / "missing.png")
    summary = deliver(billed.engine, options(server, operator=broken), accounts_of(billed),
                      now=NOW)  # fmt: skip
    [row] = rows(billed)
    assert summary.failed == 1 and row.state == "failed"
    assert row.last_error.startswith("the document could not be made:")
    assert server.sink.rcpt_commands == 0


def test_drafts_are_not_delivered_and_old_invoices_only_when_asked(tmp_path, server):
    draft = single(tmp_path / "draft", records=1, finalize=False)
    assert deliver(draft.engine, options(server), accounts_of(draft), now=NOW).planned == 0
    old = single(tmp_path / "old", records=1, finalize=True)
    later = NOW + store.PLAN_WINDOW + 1
    assert deliver(old.engine, options(server), accounts_of(old), now=later).planned == 0
    invoice = old.invoice_id("erika")
    summary = deliver(old.engine, options(server), accounts_of(old), now=later,
                      invoice_ids=[invoice])  # fmt: skip
    assert summary.sent == 1


def test_a_crash_after_the_server_accepted_never_sends_twice(billed, server, monkeypatch):
    real = store.finish

    def crash(connection, delivery_id, state, now, **kwargs):
        if state == "sent":
            raise SystemExit("killed between SMTP accept and commit")
        return real(connection, delivery_id, state, now, **kwargs)

    monkeypatch.setattr(store, "finish", crash)
    with pytest.raises(SystemExit):
        deliver(billed.engine, options(server), accounts_of(billed), now=NOW)
    monkeypatch.setattr(store, "finish", real)
    assert len(server.sink.received) == 1
    [row] = rows(billed)
    assert row.state == "sending" and row.attempts == 1  # recorded before sending
    # another run within the lease: the attempt may still be under way, left alone
    deliver(billed.engine, options(server), accounts_of(billed), now=NOW + 60)
    assert rows(billed)[0].state == "sending"
    summary = deliver(billed.engine, options(server), accounts_of(billed),
                      now=NOW + store.LEASE + 1)  # fmt: skip
    assert summary.interrupted == 1 and len(server.sink.received) == 1
    [row] = rows(billed)
    assert row.state == "failed" and "interrupted" in row.last_error
    assert row.message_id in row.last_error  # to look for in the mail server's log


def test_resend_delivers_again_and_the_status_is_the_latest(billed, server):
    deliver(billed.engine, options(server), accounts_of(billed), now=NOW)
    invoice = billed.invoice_id("erika")
    summary = resend(billed.engine, options(server), accounts_of(billed), invoice, now=NOW + 10)
    assert summary.sent == 1 and len(server.sink.received) == 2
    first, second = server.sink.received
    assert first.message["Message-ID"] != second.message["Message-ID"]
    with billed.engine.connect() as connection:
        status = delivery_status_of(connection, [invoice])[invoice]
    assert (status.sequence, status.state, status.sent_at) == (1, "sent", NOW + 10)


def test_resend_is_refused_while_a_delivery_is_under_way_or_for_a_draft(tmp_path, billed):
    deliver(billed.engine, options(), accounts_of(billed), now=NOW)  # pending: no SMTP
    invoice = billed.invoice_id("erika")
    with pytest.raises(InvalidState, match="has a delivery pending already"):
        resend(billed.engine, options(), accounts_of(billed), invoice, now=NOW)
    draft = single(tmp_path / "draft", records=1, finalize=False)
    with pytest.raises(InvalidState, match="is draft: only final invoices"):
        resend(draft.engine, options(), accounts_of(draft), draft.invoice_id("erika"), now=NOW)
    with pytest.raises(DocumentNotFound):
        resend(draft.engine, options(), accounts_of(draft), "in_nothing", now=NOW)


def test_retry_delay_doubles_up_to_a_day():
    assert [store.retry_delay(n, 300) for n in (1, 2, 3, 4)] == [300, 600, 1200, 2400]
    assert store.retry_delay(30, 300) == store.MAX_RETRY_DELAY


def test_an_unreachable_server_by_name_is_a_server_error(billed):
    smtp = SmtpConfig(host="smtp.invalid", port=25, security="none", timeout=2)
    summary = deliver(billed.engine, options(smtp=smtp), accounts_of(billed), now=NOW)
    assert "SMTP server smtp.invalid:25 unreachable" in summary.errors[0]
    assert rows(billed)[0].state == "pending"


def test_an_invoice_voided_before_it_was_delivered_is_not_sent(billed, server):
    deliver(billed.engine, options(), accounts_of(billed), now=NOW)  # planned: no SMTP yet
    invoice = billed.invoice_id("erika")
    with billed.engine.begin() as connection:
        void(connection, invoice, reason="wrong plan", now=NOW, actor="test")
    summary = deliver(billed.engine, options(server), accounts_of(billed), now=NOW + 60)
    [row] = rows(billed)
    assert summary.failed == 1 and summary.sent == 0 and server.sink.rcpt_commands == 0
    assert (row.state, row.last_error) == (
        "failed",
        "the invoice was voided before it was delivered",
    )


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")


@needs_openssl
@pytest.mark.parametrize(("security", "tls"), [("starttls", "starttls"), ("ssl", "ssl")])
def test_over_tls_with_a_verified_certificate(billed, tmp_path, monkeypatch, security, tls):
    cert = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))  # the client trusts it (system CAs)
    with smtp_server(tls=tls, cert=cert) as server:
        smtp = replace(options(server).smtp, security=security)
        summary = deliver(billed.engine, options(smtp=smtp), accounts_of(billed), now=NOW)
        assert (summary.sent, summary.errors) == (1, [])
        assert len(server.sink.received) == 1


@needs_openssl
def test_a_certificate_that_is_not_trusted_sends_nothing(billed, tmp_path):
    with smtp_server(tls="starttls", cert=self_signed(tmp_path)) as server:
        smtp = replace(options(server).smtp, security="starttls")
        summary = deliver(billed.engine, options(smtp=smtp), accounts_of(billed), now=NOW)
        assert server.sink.received == []
    [reason] = summary.errors
    assert "CERTIFICATE_VERIFY_FAILED" in reason
    assert rows(billed)[0].state == "pending"


def test_a_timeout_after_the_message_was_sent_is_interrupted_not_sent_twice(billed, server):
    # the server keeps the message, then answers after the client's timeout (a slow scan)
    server.sink.data_delays = [2.5]
    quick = options(server)
    quick = replace(quick, smtp=replace(quick.smtp, timeout=1))
    summary = deliver(billed.engine, quick, accounts_of(billed), now=NOW)
    assert (summary.sent, summary.retrying, summary.interrupted) == (0, 0, 1)
    assert len(server.sink.received) == 1
    [row] = rows(billed)
    assert (row.state, row.attempts) == ("failed", 1)
    assert row.last_error.startswith("interrupted: the SMTP connection failed after the whole")
    assert row.message_id in row.last_error  # to look for in the mail server's log
    assert f"--invoice {row.invoice_id} --resend" in row.last_error
    for days in (1, 2):  # never sent again by itself
        deliver(billed.engine, quick, accounts_of(billed), now=NOW + days * 86_400)
    assert len(server.sink.received) == 1 and [r.state for r in rows(billed)] == ["failed"]
    # the operator found no trace of it in the server's log: a resend, a new Message-ID
    again = resend(billed.engine, quick, accounts_of(billed), row.invoice_id, now=NOW + 3 * 86_400)
    assert again.sent == 1 and len(server.sink.received) == 2
    assert (
        server.sink.received[1].message["Message-ID"]
        == rows(billed)[-1].message_id
        != row.message_id
    )


def test_a_timeout_before_data_is_retried_and_sent_once(billed, server):
    server.sink.rcpt_delays = [2.5]  # no reply to RCPT TO within the client's timeout
    quick = options(server)
    quick = replace(quick, smtp=replace(quick.smtp, timeout=1))
    first = deliver(billed.engine, quick, accounts_of(billed), now=NOW)
    assert (first.retrying, first.interrupted, first.sent) == (1, 0, 0)
    [row] = rows(billed)
    # after the back-off (from when the attempt ended: the timeout took a second)
    assert row.state == "pending" and NOW + 60 <= row.next_attempt_at <= NOW + 62
    assert "SMTP connection lost" in row.last_error
    assert server.sink.received == []
    second = deliver(billed.engine, quick, accounts_of(billed), now=row.next_attempt_at)
    assert second.sent == 1 and len(server.sink.received) == 1
    assert [row.state for row in rows(billed)] == ["sent"]


def test_a_step_that_does_not_plan_only_attempts_the_due_ones(billed, server):
    server.sink.replies = ["451 4.3.0 try later"]
    retries = deliver(billed.engine, options(server), accounts_of(billed), now=NOW, plan=False)
    assert (retries.planned, retries.sent) == (0, 0) and rows(billed) == []  # nothing new
    first = deliver(billed.engine, options(server), accounts_of(billed), now=NOW)
    assert (first.planned, first.retrying) == (1, 1)
    again = deliver(billed.engine, options(server), accounts_of(billed), now=NOW + 60, plan=False)
    assert again.sent == 1 and [row.state for row in rows(billed)] == ["sent"]


def test_a_line_starting_with_a_dot_arrives_whole(server):
    # the message is sent by hand after DATA: a leading "." must be doubled on the wire
    message = EmailMessage()
    message["From"] = "billing@beispiel.example"
    message["To"] = "erika@example.de"
    message["Subject"] = "dots"
    message.set_content("first\n.\n.hidden line\n..two\nlast\n")
    mailer = Mailer(options(server).smtp)
    try:
        mailer.send(message)
    finally:
        mailer.close()
    [received] = server.sink.received
    body = received.message.get_content().replace("\r\n", "\n")
    assert body == "first\n.\n.hidden line\n..two\nlast\n"


def test_a_non_ascii_address_fails_with_the_reason_and_the_rest_go(tmp_path, server, caplog):
    made = bill(
        tmp_path,
        [account("joerg", contact=replace(ERIKA, name="Jörg Müller", email="jörg@example.de")),
         account("max", contact=replace(ERIKA, name="Max Müller", email="max@example.de"))],
        usage("joerg", 2) + usage("max", 2),
        finalize=True,
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        summary = deliver(made.engine, options(server), accounts_of(made), now=NOW)
    assert (summary.failed, summary.sent, summary.errors) == (1, 1, [])
    failed, sent = rows(made)
    assert (failed.state, failed.attempts) == ("failed", 1)
    assert failed.last_error == (
        "the recipient's e-mail address is not ASCII: internationalised addresses "
        "(SMTPUTF8) are not supported"
    )
    assert "invoice_delivery_failed" in caplog.text
    assert "jörg@example.de" not in caplog.text  # no customer address in the logs
    assert sent.state == "sent"
    [received] = server.sink.received  # a non-ASCII name is fine (RFC 2047)
    assert received.recipients == ["max@example.de"]
    assert received.message["To"] == "Max Müller <max@example.de>"
