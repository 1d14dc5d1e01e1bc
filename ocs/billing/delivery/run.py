"""The delivery step: every final invoice to its customer, once (docs/invoicing.md,
"Delivery").

:func:`deliver` runs after the bill runs (the daily schedule) and as ``ocs invoice
deliver``. In one run it

1. plans a delivery for each final invoice that has none (:func:`.store.plan`), on the
   channel of its account (``delivery = email`` or ``paper``);
2. fails the pending deliveries of invoices voided since, and settles the deliveries an
   earlier run left ``sending`` (:data:`.store.LEASE`): an
   e-mail is marked ``failed`` ("interrupted": the server may have accepted it before
   the process died, so it is never sent again by itself; resend it after checking the
   mail server's log for its Message-ID); a paper delivery is ``printed`` when its
   batch was completed (its manifest lists it), else ``pending`` again; without a print
   directory they are left ``sending`` (``unsettled``) for a run that has one;
3. e-mails each due ``email`` delivery with its PDF (when ``smtp`` is configured): the
   attempt is recorded (``sending``, its Message-ID) before the message leaves, then
   ``sent``; a temporary failure (4xx, the server unreachable) is tried again after a
   back-off (:func:`.store.retry_delay`) up to ``max_attempts``, a permanent one (5xx)
   is ``failed`` with the server's reply, a connection lost after the whole message
   was sent is ``failed`` as interrupted (it may have been accepted: never sent again
   by itself); when the server itself fails, the rest wait for the next run;
4. puts each due ``paper`` delivery into one print batch (when ``print_directory`` is
   set, :mod:`.paper`), all marked ``printed`` once the batch is complete.

Documents are made as the API makes them (:func:`~ocs.billing.documents.load_document`,
with the payments' statement), from the accounts' contacts and partitions that
``accounts_of`` returns (billing never reads Redis: the composition root does).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from ocs.billing.accounts import Contact
from ocs.billing.documents import Operator, document_accounts, load_document
from ocs.billing.documents.view import document_view
from ocs.logs import log_event

from . import store
from .paper import BatchWriter, PrintedDocument, batch_invoices
from .smtp import Mailer, SendFailure, SmtpConfig, invoice_message

__all__ = ["AccountsOf", "DeliveryOptions", "DeliverySummary", "deliver", "options_of", "resend"]

if TYPE_CHECKING:
    from ocs.config import Settings

logger = logging.getLogger(__name__)

AccountsOf = Callable[[list[str]], tuple[Mapping[str, Contact], Mapping[str, int], str]]
"""``(account ids) -> (contacts, partitions, time zone)`` of the accounts (an account
that no longer exists is left out); ValueError saying why they cannot be read."""


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """What the step needs besides the database and the accounts. ``smtp`` None: no
    e-mail is sent (those deliveries wait); ``print_directory`` None: no print batch
    is written (paper deliveries wait)."""

    operator: Operator
    records_directory: str | Path | None = None
    late_window: int = 62 * 86_400
    smtp: SmtpConfig | None = None
    print_directory: Path | None = None
    max_attempts: int = 8
    retry_delay: int = 300


def options_of(settings: Settings, *, print_directory: str | None = None) -> DeliveryOptions:
    """The step's options from ``[smtp]``, ``[delivery]``, ``[documents]`` and
    ``[billing]`` (``print_directory`` given: instead of ``delivery.print_directory``)."""
    from ocs.billing.documents import operator_of

    smtp = None
    if settings.smtp_host is not None:
        smtp = SmtpConfig(
            host=settings.smtp_host, port=settings.smtp_port, security=settings.smtp_security,
            user=settings.smtp_user, password=settings.smtp_password,
            password_file=settings.smtp_secret_file, sender=settings.smtp_from,
            timeout=settings.smtp_timeout,
        )  # fmt: skip
    directory = print_directory or settings.delivery_print_directory
    return DeliveryOptions(
        operator=operator_of(settings),
        records_directory=settings.records_directory,
        late_window=int(settings.billing_late_window),
        smtp=smtp,
        print_directory=Path(directory) if directory else None,
        max_attempts=settings.delivery_max_attempts,
        retry_delay=int(settings.delivery_retry_delay),
    )


@dataclass(slots=True)
class DeliverySummary:
    planned: int = 0
    sent: int = 0
    printed: int = 0
    retrying: int = 0
    failed: int = 0
    interrupted: int = 0
    waiting: int = 0
    """Due deliveries of a channel that is not configured (no SMTP server, no print
    directory) or not reached in this run (the SMTP server failed); with the
    ``unsettled`` ones."""
    unsettled: int = 0
    """Paper deliveries of an interrupted print batch left ``sending``: no print
    directory to see whether the batch was completed (the next run with one settles
    them)."""
    batch: Path | None = None
    errors: list[str] = field(default_factory=list)
    """Why the step could not do everything: the SMTP server or the print directory."""

    @property
    def ok(self) -> bool:
        return not self.errors


class _Clock:
    """The run's ``now`` plus the seconds since it started (a long run's claims and
    results carry their own time, so that the lease of a delivery is its own)."""

    def __init__(self, now: int) -> None:
        self.now = now
        self._started = time.monotonic()

    def __call__(self) -> int:
        return self.now + int(time.monotonic() - self._started)


@dataclass(frozen=True, slots=True)
class _Made:
    number: str
    name: str | None
    address: tuple[str, ...]
    view: dict[str, Any]
    pdf: bytes
    html: str


def _make(
    connection: Connection,
    invoice_id: str,
    options: DeliveryOptions,
    contacts: Mapping[str, Contact],
    partitions: Mapping[str, int],
    zone: ZoneInfo,
    now: int,
    *,
    html: bool,
) -> _Made:
    from ocs.billing.documents.html import render_html
    from ocs.billing.documents.pdf import render_pdf

    document = load_document(
        connection, invoice_id, operator=options.operator, contacts=contacts,
        partitions=partitions, records_directory=options.records_directory, now=now,
        late_window=options.late_window,
    )  # fmt: skip
    view = document_view(document, zone)
    logo = document.operator.logo
    customer = document.customer
    return _Made(
        number=document.number or invoice_id,
        name=customer.name,
        address=tuple(customer.address.split("\n")) if customer.address else (),
        view=view,
        pdf=render_pdf(view, logo),
        html=render_html(view, logo) if html else "",
    )


def _text_body(made: _Made, operator: Operator) -> str:
    view = made.view
    lines = [
        f"Dear {made.name or 'customer'},",
        "",
        f"your invoice {made.number} for {dict(view['facts']).get('Billing period', '')} is attached"
        " (PDF).",
        "",
        f"Amount due: {view['amount_due']} by {view['due_date']}.",
        "",
        view["payment_note"],
        "",
        operator.name,
    ]
    if operator.support:
        lines.append(operator.support)
    return "\n".join(lines) + "\n"


def _domain(sender: str) -> str:
    return sender.rpartition("@")[2] or "localhost"


def _outcome(
    connection: Connection,
    claimed: store.Claimed,
    failure: SendFailure,
    options: DeliveryOptions,
    now: int,
    summary: DeliverySummary,
) -> None:
    """Record a failed attempt: pending again after the back-off, or failed (an
    ``uncertain`` one as interrupted: the message may have been accepted)."""
    if failure.uncertain:
        store.finish(connection, claimed.id, "failed", now,
                     error=f"{failure.reason}: check the mail server's log, then resend "
                     f"(ocs invoice deliver --invoice {claimed.invoice_id} --resend)")  # fmt: skip
        summary.interrupted += 1
        return
    if failure.temporary and claimed.attempts < options.max_attempts:
        store.finish(
            connection, claimed.id, "pending", now, error=failure.reason,
            next_attempt_at=now + store.retry_delay(claimed.attempts, options.retry_delay),
        )  # fmt: skip
        summary.retrying += 1
        return
    reason = failure.reason
    if failure.temporary:
        reason = f"gave up after {claimed.attempts} attempts: {reason}"
    store.finish(connection, claimed.id, "failed", now, error=reason)
    summary.failed += 1


def _claim(engine: Engine, row: Any, now: int, **recorded: str | None) -> store.Claimed | None:
    with engine.begin() as connection:
        if not store.claim(connection, row.id, row.attempts, now, **recorded):
            return None
    return _claimed(row, recorded.get("message_id"))


def _fail_unmade(engine: Engine, row: Any, reason: str, now: int, summary: DeliverySummary) -> None:
    """A delivery whose document cannot be made (or that has nobody to go to): the
    attempt recorded and failed, with the reason."""
    claimed = _claim(engine, row, now)
    if claimed is None:
        return
    with engine.begin() as connection:
        store.finish(connection, claimed.id, "failed", now, error=reason)
    summary.failed += 1
    log_event(logger, "invoice_delivery_failed", level=logging.ERROR,
              invoice=row.invoice_id, reason=reason)  # fmt: skip


def _email(
    engine: Engine,
    rows: Sequence[Any],
    options: DeliveryOptions,
    inputs: tuple[Mapping[str, Contact], Mapping[str, int], ZoneInfo],
    clock: _Clock,
    summary: DeliverySummary,
) -> None:
    smtp = options.smtp
    assert smtp is not None
    contacts, partitions, zone = inputs
    mailer = Mailer(smtp)
    try:
        for index, row in enumerate(rows):
            contact = contacts.get(row.account)
            if contact is None or not contact.email:
                reason = store.channel_problem(contact) or "no e-mail address"
                _fail_unmade(engine, row, reason, clock(), summary)
                continue
            try:
                with engine.connect() as connection:
                    made = _make(connection, row.invoice_id, options, contacts, partitions,
                                 zone, clock(), html=True)  # fmt: skip
            except Exception as error:  # a defect or an unreadable logo: this one fails
                _fail_unmade(engine, row, f"the document could not be made: {error}",
                             clock(), summary)  # fmt: skip
                continue
            attempt = row.attempts + 1
            message_id = (
                f"<{row.invoice_id}.{row.sequence}.{attempt}.{secrets.token_hex(4)}"
                f"@{_domain(smtp.sender)}>"
            )
            try:
                message = invoice_message(
                    sender=smtp.sender, operator=options.operator.name,
                    recipient=contact.email, name=contact.name, number=made.number,
                    message_id=message_id, text=_text_body(made, options.operator),
                    html=made.html, pdf=made.pdf, at=clock(),
                )  # fmt: skip
            except ValueError as error:  # an address that cannot be written: this one fails
                _fail_unmade(engine, row, str(error), clock(), summary)
                continue
            claimed = _claim(engine, row, clock(), message_id=message_id,
                             recipient=contact.email)  # fmt: skip
            if claimed is None:
                continue  # another step took it
            try:
                mailer.send(message)
            except SendFailure as failure:
                with engine.begin() as connection:
                    _outcome(connection, claimed, failure, options, clock(), summary)
                log_event(logger, "invoice_email_failed", level=logging.WARNING,
                          invoice=row.invoice_id, attempt=attempt,
                          temporary=failure.temporary, reason=failure.reason)  # fmt: skip
                if failure.server:
                    summary.errors.append(failure.reason)
                    summary.waiting += len(rows) - index - 1
                    return
                continue
            with engine.begin() as connection:
                store.finish(connection, claimed.id, "sent", clock())
            summary.sent += 1
    finally:
        mailer.close()


def _paper(
    engine: Engine,
    rows: Sequence[Any],
    options: DeliveryOptions,
    inputs: tuple[Mapping[str, Contact], Mapping[str, int], ZoneInfo],
    clock: _Clock,
    summary: DeliverySummary,
) -> None:
    directory = options.print_directory
    assert directory is not None
    contacts, partitions, zone = inputs
    now = clock()
    batch = f"print-{datetime.fromtimestamp(now, UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    try:
        writer = BatchWriter(directory, batch)
    except OSError as error:
        reason = f"print directory {directory}: {error.strerror or error}"
        summary.errors.append(reason)
        summary.waiting += len(rows)
        log_event(logger, "print_batch_failed", level=logging.ERROR, reason=reason)
        return
    claimed: list[tuple[store.Claimed, Any]] = []
    with engine.begin() as connection:
        for row in rows:
            if store.claim(connection, row.id, row.attempts, now, batch=batch):
                claimed.append((_claimed(row), row))
    added: list[store.Claimed] = []
    unmade: set[int] = set()
    try:
        for delivery, row in claimed:
            try:
                with engine.connect() as connection:
                    made = _make(connection, row.invoice_id, options, contacts, partitions,
                                 zone, clock(), html=False)  # fmt: skip
                printed = PrintedDocument(
                    invoice_id=row.invoice_id, number=made.number, account=row.account,
                    name=made.name or row.account, address=made.address, pdf=made.pdf,
                )  # fmt: skip
                writer.add(printed)
            except OSError:
                raise  # the print directory: the whole batch
            except Exception as error:  # this document: it fails, the batch goes on
                with engine.begin() as connection:
                    store.finish(connection, delivery.id, "failed", clock(),
                                 error=f"the document could not be made: {error}")  # fmt: skip
                summary.failed += 1
                unmade.add(delivery.id)
                continue
            added.append(delivery)
        if not added:
            writer.abandon()
            return
        created = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        summary.batch = writer.complete(created)
    except OSError as error:
        writer.abandon()
        reason = f"print batch {directory / batch}: {error.strerror or error}"
        summary.errors.append(reason)
        log_event(logger, "print_batch_failed", level=logging.ERROR, reason=reason)
        failure = SendFailure(reason, temporary=True, server=True)
        with engine.begin() as connection:
            for delivery, _ in claimed:
                if delivery.id not in unmade:
                    _outcome(connection, delivery, failure, options, clock(), summary)
        return
    with engine.begin() as connection:
        for delivery in added:
            store.finish(connection, delivery.id, "printed", clock())
    summary.printed += len(added)
    log_event(logger, "print_batch_written", batch=str(summary.batch), documents=len(added))


def _claimed(row: Any, message_id: str | None = None) -> store.Claimed:
    """The delivery of ``row`` as this process claimed it (one attempt more)."""
    return store.Claimed(
        id=row.id, invoice_id=row.invoice_id, attempts=row.attempts + 1, message_id=message_id
    )


def _settle_interrupted(
    engine: Engine, options: DeliveryOptions, now: int, summary: DeliverySummary
) -> None:
    with engine.begin() as connection:
        for row in store.interrupted(connection, "email", now):
            store.finish(
                connection, row.id, "failed", now,
                error=f"interrupted: the process stopped during attempt {row.attempts} "
                f"(Message-ID {row.message_id}); the mail server may have accepted it: check "
                "its log, then resend (ocs invoice deliver --invoice ID --resend)",
            )  # fmt: skip
            summary.interrupted += 1
        paper = store.interrupted(connection, "paper", now)
        if paper and options.print_directory is None:
            # whether their batch was completed cannot be known without its directory:
            # left as they are (pending again, a complete batch would be printed twice)
            summary.unsettled += len(paper)
            summary.waiting += len(paper)
            log_event(
                logger, "print_batch_unsettled", level=logging.WARNING, deliveries=len(paper),
                batches=sorted({str(row.batch) for row in paper}),
                reason="no print directory: the interrupted batches cannot be checked",
            )  # fmt: skip
            return
        batches: dict[str, set[str] | None] = {}
        for row in paper:
            if row.batch not in batches:
                found = None
                if options.print_directory is not None and row.batch:
                    found = batch_invoices(options.print_directory, row.batch)
                batches[row.batch] = found
            listed = batches[row.batch]
            if listed is not None and row.invoice_id in listed:
                store.finish(connection, row.id, "printed", now)
            else:  # the batch was never completed: into the next one
                store.finish(
                    connection, row.id, "pending", now, next_attempt_at=now,
                    error=f"print batch {row.batch} was interrupted before it was complete",
                )  # fmt: skip
            summary.interrupted += 1


def deliver(
    engine: Engine,
    options: DeliveryOptions,
    accounts_of: AccountsOf,
    *,
    now: int,
    invoice_ids: Sequence[str] | None = None,
    plan: bool = True,
) -> DeliverySummary:
    """One run of the step (module doc) at ``now`` (Unix s); ``invoice_ids``: only
    those invoices (any age), else every final invoice due; ``plan`` False: no new
    deliveries are planned, only the due ones attempted (the schedule's retries between
    its daily runs). ValueError from ``accounts_of`` when the accounts cannot be read
    (nothing was changed then)."""
    summary = DeliverySummary()
    clock = _Clock(now)
    with engine.connect() as connection:
        candidates = store.plan_candidates(connection, now, invoice_ids) if plan else []
        email = store.due(connection, "email", now, invoice_ids)
        paper = store.due(connection, "paper", now, invoice_ids)
        wanted = {invoice for invoice, _ in candidates}
        wanted.update(row.invoice_id for row in (*email, *paper))
        accounts: dict[str, None] = {}
        for invoice in sorted(wanted):
            accounts.update(dict.fromkeys(document_accounts(connection, invoice)))
    contacts, partitions, zone = accounts_of(list(accounts)) if accounts else ({}, {}, "UTC")
    inputs = (contacts, partitions, ZoneInfo(zone))
    if candidates:
        with engine.begin() as connection:
            summary.planned = store.plan(connection, candidates, contacts, now)
    with engine.begin() as connection:
        summary.failed += store.cancel_void(connection, now)
    _settle_interrupted(engine, options, now, summary)
    with engine.connect() as connection:
        email = store.due(connection, "email", now, invoice_ids)
        paper = store.due(connection, "paper", now, invoice_ids)
    if email and options.smtp is None:
        summary.waiting += len(email)
    elif email:
        _email(engine, email, options, inputs, clock, summary)
    if paper and options.print_directory is None:
        summary.waiting += len(paper)
    elif paper:
        _paper(engine, paper, options, inputs, clock, summary)
    done = (summary.planned, summary.sent, summary.printed, summary.retrying, summary.failed,
            summary.waiting, summary.interrupted)  # fmt: skip
    level = logging.INFO if summary.ok else logging.ERROR
    if not plan and summary.ok and not any(done):
        level = logging.DEBUG  # a retry step with nothing due: every few minutes
    log_event(
        logger, "invoice_delivery_completed", level=level,
        planned=summary.planned, sent=summary.sent, printed=summary.printed,
        retrying=summary.retrying, failed=summary.failed, waiting=summary.waiting,
        interrupted=summary.interrupted, unsettled=summary.unsettled,
    )  # fmt: skip
    return summary


def resend(
    engine: Engine,
    options: DeliveryOptions,
    accounts_of: AccountsOf,
    invoice_id: str,
    *,
    now: int,
) -> DeliverySummary:
    """Deliver a final invoice again (the next sequence, on its account's channel now),
    then run the step for it. :class:`~ocs.billing.lifecycle.InvalidState` for an invoice
    that is not final or has a delivery under way, ``DocumentNotFound`` for none."""
    with engine.connect() as connection:
        account = document_accounts(connection, invoice_id)[0]
    contacts, _, _ = accounts_of([account])
    with engine.begin() as connection:
        store.resend(connection, invoice_id, contacts.get(account), now)
    return deliver(engine, options, accounts_of, now=now, invoice_ids=[invoice_id])
