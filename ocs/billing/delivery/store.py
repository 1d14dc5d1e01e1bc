"""The ``invoice_deliveries`` rows: planned, claimed before anything leaves, finished.

Every change is one short transaction in the caller's connection, so that what the
database says is true at each step:

1. :func:`plan` gives each final invoice that has no delivery yet (finalised within
   :data:`PLAN_WINDOW`, or the one asked for) a ``pending`` delivery on the channel its
   account wants (``sequence`` 0; a resend is the next sequence, :func:`resend`). The
   unique ``(invoice_id, sequence)`` and an insert-if-absent make a second planner's
   insert do nothing instead of doubling a delivery (or failing the step).
2. :func:`claim` turns a ``pending`` delivery whose ``next_attempt_at`` has come into
   ``sending``, counts the attempt and records the message id and recipient, **before**
   the message leaves: only the claimer that changed the row sends (a second step
   running at the same time finds it taken).
3. :func:`finish` records what happened: ``sent``/``printed``, ``pending`` again with
   the next attempt after a back-off, or ``failed`` with the reason.

A delivery still ``sending`` after :data:`LEASE` was interrupted (the process died
during the attempt): :func:`interrupted` lists them for the step to settle (e-mail:
``failed``, never sent again by itself, since the message may have left; paper: by
whether its batch was completed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ocs.billing.accounts import Contact
from ocs.billing.lifecycle import DocumentNotFound, InvalidState
from ocs.billing.schema import invoice_deliveries, invoices

__all__ = [
    "LEASE",
    "MAX_RETRY_DELAY",
    "PLAN_WINDOW",
    "Claimed",
    "cancel_void",
    "channel_problem",
    "claim",
    "due",
    "finish",
    "interrupted",
    "plan",
    "plan_candidates",
    "resend",
    "retry_delay",
]

DAY = 86_400
PLAN_WINDOW = 31 * DAY
"""Final invoices finalised this long ago at most get a delivery by themselves (the
first run after an upgrade does not mail years of old invoices); older ones only when
asked for (``ocs invoice deliver --invoice``)."""
LEASE = 3600
"""Seconds a ``sending`` delivery may take before it counts as interrupted."""
MAX_RETRY_DELAY = DAY
"""The longest wait between two attempts, however many failed."""

_d = invoice_deliveries.c


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this process took (``sending``): the attempt is already counted."""

    id: int
    invoice_id: str
    attempts: int
    message_id: str | None = None


def retry_delay(attempts: int, base: int) -> int:
    """Seconds before the next attempt after ``attempts`` failed ones: ``base``
    doubled for each failure after the first, at most :data:`MAX_RETRY_DELAY`."""
    return int(min(base * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY))


def plan_candidates(
    connection: Connection, now: int, invoice_ids: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """``(invoice id, account)`` of the final invoices without a delivery: those
    finalised in the last :data:`PLAN_WINDOW`, or ``invoice_ids`` (final ones, any age)."""
    i = invoices.c
    query = (
        select(i.id, i.account)
        .where(
            i.state == "final",
            ~select(_d.id).where(_d.invoice_id == i.id).exists(),
        )
        .order_by(i.finalized_at, i.id)
    )
    if invoice_ids is None:
        query = query.where(i.finalized_at >= now - PLAN_WINDOW)
    else:
        query = query.where(i.id.in_(list(invoice_ids)))
    return [(row.id, row.account) for row in connection.execute(query)]


def channel_problem(contact: Contact | None) -> str | None:
    """Why an invoice cannot be delivered to an account with ``contact`` (None: it can)."""
    if contact is None:
        return "the account no longer exists (no contact to deliver to)"
    if contact.delivery != "paper" and not contact.email:
        return "the account wants e-mail but has no e-mail address"
    return None


def _channel(contact: Contact | None) -> tuple[str, str | None, str | None]:
    """``(channel, recipient, why it cannot be delivered)`` of an account's contact."""
    problem = channel_problem(contact)
    if contact is not None and contact.delivery == "paper":
        return "paper", contact.name, problem
    return "email", None if contact is None else contact.email, problem


def _insert(
    connection: Connection, invoice_id: str, sequence: int, contact: Contact | None, now: int
) -> bool:
    """Insert the delivery ``(invoice_id, sequence)`` unless it exists: ``INSERT ... ON
    CONFLICT (invoice_id, sequence) DO NOTHING`` (SQLite and PostgreSQL), so that a
    concurrent planner or resend that inserted it first (even uncommitted: PostgreSQL
    waits for it) makes this a no-op instead of an IntegrityError that would abort the
    caller's whole transaction. True when this call inserted it."""
    channel, recipient, problem = _channel(contact)
    dialect = sqlite if connection.dialect.name == "sqlite" else postgresql
    statement = (
        dialect.insert(invoice_deliveries)
        .values(
            invoice_id=invoice_id, sequence=sequence, channel=channel,
            state="failed" if problem else "pending", attempts=0, next_attempt_at=now,
            last_error=problem, recipient=recipient, created_at=now, updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[_d.invoice_id, _d.sequence])
        .returning(_d.id)  # rowcount is -1 with RETURNING (PostgreSQL): the row says it
    )  # fmt: skip
    return connection.execute(statement).first() is not None


def plan(
    connection: Connection,
    candidates: Sequence[tuple[str, str]],
    contacts: Mapping[str, Contact],
    now: int,
) -> int:
    """A first delivery for each of ``candidates`` (:func:`plan_candidates`) that still
    has none, on the channel of its account's contact; one whose account cannot be
    delivered to (gone, e-mail without an address) is ``failed`` at once with the
    reason. How many were planned: one that another planner or a resend gave a
    delivery since the candidates were read is left alone (:func:`_insert`)."""
    planned = 0
    for invoice_id, account in candidates:
        exists = connection.execute(
            select(_d.id).where(_d.invoice_id == invoice_id).limit(1)
        ).first()
        if exists is None and _insert(connection, invoice_id, 0, contacts.get(account), now):
            planned += 1
    return planned


def resend(connection: Connection, invoice_id: str, contact: Contact | None, now: int) -> int:
    """A new delivery of a final invoice (the next sequence), on its account's channel
    now; the new sequence. ValueError for an invoice that is not final or has a
    delivery under way (``pending`` or ``sending``)."""
    state = connection.execute(
        select(invoices.c.state).where(invoices.c.id == invoice_id)
    ).scalar_one_or_none()
    if state is None:
        raise DocumentNotFound(f"no customer bill {invoice_id!r}")
    if state != "final":
        raise InvalidState(f"invoice {invoice_id!r} is {state}: only final invoices are delivered")
    busy = connection.execute(
        select(_d.sequence, _d.state).where(
            _d.invoice_id == invoice_id, _d.state.in_(("pending", "sending"))
        )
    ).first()
    if busy is not None:
        raise InvalidState(
            f"invoice {invoice_id!r} has a delivery {busy.state} already (sequence {busy.sequence})"
        )
    last = connection.execute(
        select(func.max(_d.sequence)).where(_d.invoice_id == invoice_id)
    ).scalar_one()
    sequence = 0 if last is None else int(last) + 1
    if not _insert(connection, invoice_id, sequence, contact, now):
        # a planner or another resend inserted that sequence meanwhile: one under way
        raise InvalidState(
            f"invoice {invoice_id!r} has a delivery pending already (sequence {sequence})"
        )
    return sequence


def cancel_void(connection: Connection, now: int) -> int:
    """Fail the deliveries not yet made of invoices voided since they were planned (a
    void invoice asks nothing of the customer); how many."""
    void = select(invoices.c.id).where(invoices.c.state == "void")
    result = connection.execute(
        update(invoice_deliveries)
        .where(_d.state == "pending", _d.invoice_id.in_(void))
        .values(state="failed", updated_at=now,
                last_error="the invoice was voided before it was delivered")
    )  # fmt: skip
    return int(result.rowcount)


def due(
    connection: Connection, channel: str, now: int, invoice_ids: Sequence[str] | None = None
) -> list[Any]:
    """The ``pending`` deliveries of ``channel`` whose next attempt has come, oldest
    first, with their invoice's account and number."""
    i = invoices.c
    query = (
        select(_d.id, _d.invoice_id, _d.sequence, _d.attempts, i.account, i.number)
        .join(invoices, i.id == _d.invoice_id)
        .where(_d.state == "pending", _d.channel == channel, _d.next_attempt_at <= now)
        .order_by(_d.next_attempt_at, _d.id)
    )
    if invoice_ids is not None:
        query = query.where(_d.invoice_id.in_(list(invoice_ids)))
    return list(connection.execute(query))


def claim(
    connection: Connection,
    delivery_id: int,
    seen_attempts: int,
    now: int,
    *,
    message_id: str | None = None,
    recipient: str | None = None,
    batch: str | None = None,
) -> bool:
    """Take a ``pending`` delivery (that still has ``seen_attempts``) for one attempt:
    ``sending``, the attempt counted, what will be sent recorded. False when another
    step took or changed it first (then nothing may be sent)."""
    values: dict[str, Any] = {
        "state": "sending",
        "attempts": seen_attempts + 1,
        "updated_at": now,
        "message_id": message_id,
        "batch": batch,
    }
    if recipient is not None:
        values["recipient"] = recipient
    result = connection.execute(
        update(invoice_deliveries)
        .where(_d.id == delivery_id, _d.state == "pending", _d.attempts == seen_attempts)
        .values(**values)
    )
    return result.rowcount == 1


def finish(
    connection: Connection,
    delivery_id: int,
    state: str,
    now: int,
    *,
    error: str | None = None,
    next_attempt_at: int | None = None,
) -> None:
    """Record the outcome of a claimed attempt: ``sent``/``printed`` (now), ``pending``
    again at ``next_attempt_at`` with the ``error``, or ``failed`` with it."""
    values: dict[str, Any] = {"state": state, "updated_at": now, "last_error": error}
    if state in ("sent", "printed"):
        values["sent_at"] = now
    if state == "pending":
        if next_attempt_at is None:
            raise ValueError("a delivery pending again needs its next attempt time")
        values["next_attempt_at"] = next_attempt_at
        values["message_id"] = None  # the next attempt sends a message of its own
    connection.execute(
        update(invoice_deliveries)
        .where(_d.id == delivery_id, _d.state == "sending")
        .values(**values)
    )


def interrupted(connection: Connection, channel: str, now: int) -> list[Any]:
    """The ``sending`` deliveries of ``channel`` older than :data:`LEASE`."""
    return list(
        connection.execute(
            select(invoice_deliveries).where(
                _d.state == "sending", _d.channel == channel, _d.updated_at < now - LEASE
            )
        )
    )
