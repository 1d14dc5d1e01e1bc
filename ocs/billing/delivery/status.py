"""The delivery status of invoices as the API and the CLI show it.

An invoice's status is its latest delivery (the highest ``sequence``: a resend's, once
there is one). ``delivered`` (``sent`` or ``printed``) is what makes a final bill's
TMF678 state ``sent`` (:func:`ocs.billing.representation.bill_state`; payments'
``partiallyPaid`` and ``settled`` come first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from ocs.billing.schema import invoice_deliveries

__all__ = ["DELIVERED", "DeliveryStatus", "deliveries_of", "delivery_json", "delivery_status_of"]

DELIVERED = ("sent", "printed")


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    invoice_id: str
    sequence: int
    channel: str
    state: str
    attempts: int
    next_attempt_at: int
    last_error: str | None
    recipient: str | None
    message_id: str | None
    batch: str | None
    sent_at: int | None
    created_at: int
    updated_at: int

    @property
    def delivered(self) -> bool:
        return self.state in DELIVERED


def _status(row: Any) -> DeliveryStatus:
    return DeliveryStatus(
        invoice_id=row.invoice_id,
        sequence=row.sequence,
        channel=row.channel,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        recipient=row.recipient,
        message_id=row.message_id,
        batch=row.batch,
        sent_at=row.sent_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def delivery_status_of(
    connection: Connection, invoice_ids: Sequence[str]
) -> dict[str, DeliveryStatus]:
    """The latest delivery of each of ``invoice_ids`` that has one, in one query."""
    if not invoice_ids:
        return {}
    d = invoice_deliveries.c
    latest = (
        select(d.invoice_id, func.max(d.sequence).label("sequence"))
        .where(d.invoice_id.in_(list(invoice_ids)))
        .group_by(d.invoice_id)
        .subquery()
    )
    rows = connection.execute(
        select(invoice_deliveries).join(
            latest, (d.invoice_id == latest.c.invoice_id) & (d.sequence == latest.c.sequence)
        )
    )
    return {row.invoice_id: _status(row) for row in rows}


def deliveries_of(connection: Connection, invoice_id: str) -> list[DeliveryStatus]:
    """Every delivery of ``invoice_id``, the first (sequence 0) first."""
    d = invoice_deliveries.c
    rows = connection.execute(
        select(invoice_deliveries).where(d.invoice_id == invoice_id).order_by(d.sequence)
    )
    return [_status(row) for row in rows]


def delivery_json(status: DeliveryStatus | None) -> dict[str, Any] | None:
    """The ``delivery`` of a CustomerBill (our extension of TMF678): how and whether the
    bill reached its customer; None before any delivery was planned."""
    # imported here: the representation imports this module
    from ocs.billing.representation import timestamp as _instant

    if status is None:
        return None
    return {
        "channel": status.channel,
        "state": status.state,
        "attempts": status.attempts,
        "resends": status.sequence,
        "recipient": status.recipient,
        "messageId": status.message_id,
        "printBatch": status.batch,
        "sentDate": _instant(status.sent_at),
        "nextAttemptDate": _instant(status.next_attempt_at)
        if status.state in ("pending", "sending")
        else None,
        "lastError": status.last_error,
        "lastUpdate": _instant(status.updated_at),
    }
