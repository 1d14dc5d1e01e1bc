"""TMF676 payments and refunds (docs/api.md, "API: /v1/payment").

The handlers translate HTTP only: payments are recorded and allocated by
:mod:`ocs.billing.payments.allocation` in the billing database (one transaction, in a
thread) and shown by :mod:`ocs.billing.payments.tmf`. The account must exist (Redis:
404 otherwise); its currency is the one its invoices and payments have, else the
account's own. A POST needs an ``Idempotency-Key``: the same key with the same body
records nothing and answers the first payment (``Idempotent-Replayed: true``), with
another body it is a 409. Payment errors carry their status (404, 409, 422) and are
mapped in :mod:`ocs.api.errors`.

A payment that settles every overdue bill of an account that dunning barred lifts the
bar at once (the account is ``active`` again; :mod:`ocs.payment_dunning`).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from sqlalchemy import Connection

from ocs.billing.payments.allocation import (
    AccountMoney,
    PaymentRefused,
    PaymentRequest,
    RefundRequest,
    UnknownAccount,
    money_in,
    parse_amount,
    record_payment,
    refund_credit,
)
from ocs.billing.payments.tmf import (
    list_payments,
    list_refunds,
    parse_instant,
    payment,
    payment_balance,
    refund,
)
from ocs.billing.schema import PAYMENT_METHODS
from quota_engine.accounts.balance_actions import MAX_REASON
from quota_engine.accounts.model import Account

from .bills import MONEY, REF, REPLAYED_HEADER, _actor, _query
from .common import key_and_body, path_id
from .context import Api, api_of, billing_of
from .errors import ApiError
from .pagination import page, paged
from .schema import ID, TEXT, array, nullable, obj

__all__ = [
    "create_payment",
    "create_refund",
    "get_payment",
    "get_payment_balance",
    "get_refund",
    "list_payment",
    "list_refund",
]

PAYMENT_ID = "payment_id"
REFUND_ID = "refund_id"
ACCOUNT_FILTER = "account.id"

# --------------------------------------------------------------------------- schemas

METHOD = obj(
    {"id": TEXT, "name": {"type": "string", "enum": list(PAYMENT_METHODS)}},
    ("name",),
    description="how the money came: bank_transfer, card, cash, direct_debit, ...",
)
PAYMENT = obj(
    {
        "id": TEXT,
        "href": TEXT,
        "@type": TEXT,
        "account": REF,
        "amount": MONEY,
        "totalAmount": MONEY,
        "paymentMethod": METHOD,
        "channel": obj({"name": {"type": "string", "enum": ["api", "cli", "import"]}}),
        "paymentDate": TEXT,
        "status": {"type": "string", "enum": ["succeeded"]},
        "statusDate": TEXT,
        "correlatorId": {**nullable(TEXT), "description": "the bank's or gateway's id"},
        "reference": {**nullable(TEXT), "description": "what the payer wrote (ours)"},
        "description": TEXT,
        "paymentItem": array(
            obj({"item": REF, "amount": MONEY}, ("item", "amount")),
            description="the bills this payment paid (live allocations)",
        ),
    },
    ("id", "href", "account", "amount", "paymentMethod", "paymentDate", "status", "paymentItem"),
    description="A TMF676 Payment: money received from an account.",
)
REFUND = obj(
    {
        "id": TEXT,
        "href": TEXT,
        "@type": TEXT,
        "account": REF,
        "amount": MONEY,
        "totalAmount": MONEY,
        "paymentMethod": METHOD,
        "refundDate": TEXT,
        "status": {"type": "string", "enum": ["succeeded"]},
        "statusDate": TEXT,
        "reference": nullable(TEXT),
        "reason": TEXT,
    },
    ("id", "href", "account", "amount", "refundDate", "status"),
    description="A TMF676 Refund: an account's credit given back.",
)

PAYMENT_BALANCE = obj(
    {
        "account": REF,
        "amountDue": {**MONEY, "description": "what the open bills still owe"},
        "credit": {**MONEY, "description": "over-payments kept for the next bill"},
        "dunningState": {"type": "string", "enum": ["none", "reminder", "barring", "barred"]},
        "openBill": array(
            obj(
                {
                    "id": TEXT,
                    "href": TEXT,
                    "billNo": TEXT,
                    "paymentDueDate": TEXT,
                    "amountDue": MONEY,
                    "remainingAmount": MONEY,
                },
                ("id", "billNo", "paymentDueDate", "remainingAmount"),
            ),
            description="final bills with something unpaid, oldest first",
        ),
    },
    ("account", "amountDue", "credit", "dunningState", "openBill"),
    description="An account's open bills, credit and dunning state (ours).",
)
AMOUNT_IN = obj(
    {
        "unit": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217"},
        "value": {
            "type": "string",
            "pattern": r"^[0-9]{1,15}(\.[0-9]{1,6})?$",
            "description": "more than 0, at most the currency's decimals",
            "example": "25.00",
        },
    },
    ("unit", "value"),
    additionalProperties=False,
)
ACCOUNT_IN = obj({"id": ID}, ("id",), additionalProperties=False)
METHOD_IN = obj(
    {"name": {"type": "string", "enum": list(PAYMENT_METHODS)}},
    ("name",),
    additionalProperties=False,
)
DATE_IN = {
    "type": "string",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2}))?$",
    "description": "ISO 8601 with its offset; absent: now",
    "example": "2026-12-05T10:00:00Z",
}
SHORT = {"type": "string", "minLength": 1, "maxLength": 200}
PAYMENT_IN = obj(
    {
        "account": ACCOUNT_IN,
        "amount": AMOUNT_IN,
        "paymentMethod": {**METHOD_IN, "description": "default bank_transfer"},
        "paymentDate": DATE_IN,
        "correlatorId": {**SHORT, "description": "the bank's or gateway's id: recorded once"},
        "reference": {**SHORT, "description": "what the payer wrote (invoice number, ...)"},
        "description": {"type": "string", "maxLength": MAX_REASON},
    },
    ("account", "amount"),
    additionalProperties=False,
)
REFUND_IN = obj(
    {
        "account": ACCOUNT_IN,
        "amount": AMOUNT_IN,
        "paymentMethod": {**METHOD_IN, "description": "default bank_transfer"},
        "refundDate": DATE_IN,
        "reference": SHORT,
        "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON},
    },
    ("account", "amount", "reason"),
    additionalProperties=False,
)

# --------------------------------------------------------------------------- helpers


async def _account(api: Api, account_id: str) -> tuple[Account, AccountMoney | None]:
    """The account (404 naming ``account.id``) and its currency as the catalog writes it."""
    account = await api.accounts.get_account(account_id)
    if account is None:
        raise ApiError(404, f"no account {account_id!r}", [("account.id", "no such account")])
    catalog = await api.catalogs.active()
    known = None
    if catalog is not None and catalog.currency == account.currency:
        known = AccountMoney(account.currency, catalog.minor_digits)
    return account, known


def _amount(
    connection: Connection, account: str, amount: dict[str, str], known: AccountMoney | None
) -> int:
    """The body's ``amount`` in micro-units, in the account's currency (422 otherwise)."""
    money = money_in(connection, account, amount["unit"], known)
    try:
        return parse_amount(amount["value"], money.minor_digits)
    except ValueError as exc:
        raise PaymentRefused(str(exc), field="amount.value") from None


def _instant(body: dict[str, Any], name: str) -> int | None:
    if name not in body:
        return None
    try:
        return parse_instant(body[name])
    except ValueError as exc:
        raise ApiError.refused([(name, str(exc))]) from None


def _created(resource: dict[str, Any], replay: bool) -> web.Response:
    return web.json_response(
        resource,
        status=201,
        headers={REPLAYED_HEADER: "true" if replay else "false", "Location": resource["href"]},
    )


# --------------------------------------------------------------------------- payments


async def list_payment(request: web.Request) -> web.Response:
    """The payments, newest first; filter ``account.id``."""
    offset, limit = page(request)
    account = _query(request, ACCOUNT_FILTER, ID)
    total, items = await billing_of(request).read(
        lambda c: list_payments(c, account=account, limit=limit, offset=offset)
    )
    return paged(items, total)


async def get_payment(request: web.Request) -> web.Response:
    payment_id = path_id(request, PAYMENT_ID)
    return web.json_response(await billing_of(request).read(lambda c: payment(c, payment_id)))


async def create_payment(request: web.Request) -> web.Response:
    """Record a payment once per Idempotency-Key and allocate it to the account's open
    bills, oldest first; what is left is the account's credit."""
    from ocs.payment_dunning import lift_settled

    key, body = await key_and_body(request, PAYMENT_IN, per="payment")
    api = api_of(request)
    database = billing_of(request)
    account_id = body["account"]["id"]
    _, known = await _account(api, account_id)
    received = _instant(body, "paymentDate")
    actor, now = _actor(request), int(time.time())

    def work(connection: Connection) -> tuple[bool, dict[str, Any]]:
        amount = _amount(connection, account_id, body["amount"], known)
        recorded = record_payment(
            connection,
            PaymentRequest(
                account=account_id,
                amount_micro=amount,
                currency=body["amount"]["unit"],
                method=body.get("paymentMethod", {}).get("name", "bank_transfer"),
                received_at=received,
                reference=body.get("reference"),
                external_id=body.get("correlatorId"),
                description=body.get("description", ""),
            ),
            now=now,
            key=key,
            source="api",
            actor=actor,
            known=known,
        )
        return recorded.replayed, payment(connection, recorded.id)

    replay, resource = await database.write(work)
    await lift_settled(api.accounts, database, [account_id], settings=database.settings, now=now)
    return _created(resource, replay)


async def get_payment_balance(request: web.Request) -> web.Response:
    """The account's open bills (with their due dates), its credit and dunning state."""
    account_id = path_id(request)
    database = billing_of(request)
    terms = database.settings.documents_payment_terms
    try:
        balance = await database.read(lambda c: payment_balance(c, account_id, payment_terms=terms))
    except UnknownAccount as exc:  # named by the path here, not a body
        raise ApiError(404, str(exc), [("account_id", str(exc))]) from None
    return web.json_response(balance)


# --------------------------------------------------------------------------- refunds


async def list_refund(request: web.Request) -> web.Response:
    """The refunds, newest first; filter ``account.id``."""
    offset, limit = page(request)
    account = _query(request, ACCOUNT_FILTER, ID)
    total, items = await billing_of(request).read(
        lambda c: list_refunds(c, account=account, limit=limit, offset=offset)
    )
    return paged(items, total)


async def get_refund(request: web.Request) -> web.Response:
    refund_id = path_id(request, REFUND_ID)
    return web.json_response(await billing_of(request).read(lambda c: refund(c, refund_id)))


async def create_refund(request: web.Request) -> web.Response:
    """Give back part or all of the account's credit, once per Idempotency-Key; 422
    above the credit."""
    key, body = await key_and_body(request, REFUND_IN, per="refund")
    api = api_of(request)
    account_id = body["account"]["id"]
    _, known = await _account(api, account_id)
    refunded = _instant(body, "refundDate")
    actor, now = _actor(request), int(time.time())

    def work(connection: Connection) -> tuple[bool, dict[str, Any]]:
        amount = _amount(connection, account_id, body["amount"], known)
        recorded = refund_credit(
            connection,
            RefundRequest(
                account=account_id,
                amount_micro=amount,
                currency=body["amount"]["unit"],
                method=body.get("paymentMethod", {}).get("name", "bank_transfer"),
                reference=body.get("reference"),
                reason=body["reason"],
                refunded_at=refunded,
            ),
            now=now,
            key=key,
            actor=actor,
        )
        return recorded.replayed, refund(connection, recorded.id)

    replay, resource = await billing_of(request).write(work)
    return _created(resource, replay)
