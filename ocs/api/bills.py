"""TMF678 customer bills: invoices, their lines, finalise, void, credit notes and
off-cycle bills on demand (docs/api.md, "API: /v1/customerBill").

The handlers translate HTTP only: the documents are read by
:mod:`ocs.billing.representation` and changed by :mod:`ocs.billing.lifecycle`, in the
billing database (:class:`ocs.api.context.BillingDatabase`: every call in a thread,
never on the event loop). Lifecycle errors carry their status (404, 409, 422) and are
mapped in :mod:`ocs.api.errors` like every other error.

A credit note needs an ``Idempotency-Key`` header, as top-ups do: the same key again
(same request) issues nothing and answers the first credit note, with
``Idempotent-Replayed: true``; the key with a different request is a 409.
"""

from __future__ import annotations

import time
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import Connection, Engine, func, select

from ocs.billing.bill_run import BillRunOptions
from ocs.billing.lifecycle import (
    CreditLine,
    DocumentNotFound,
    create_credit_note,
    finalize,
    void,
)
from ocs.billing.numbering import ensure_sequence
from ocs.billing.off_cycle import run_off_cycle
from ocs.billing.representation import (
    BILL_STATES,
    TMF_BILL_STATES,
    applied_rates,
    credit_note,
    credit_notes_of,
    customer_bill,
    list_bills,
    parse_decimal,
)
from ocs.billing.schema import credit_note_items, credit_notes, invoice_items, invoices
from ocs.billing_source import read_billing_accounts, read_document_accounts
from quota_engine.accounts.balance_actions import MAX_REASON, key_problem

from . import schema
from .auth import TOKENS_KEY, role_of_token
from .common import KEY_HEADER, json_body, key_and_body, path_id
from .context import api_of, billing_of
from .deliveries import DELIVERY
from .errors import ApiError
from .pagination import page, paged, window
from .schema import BOOL, ID, INT, TEXT, array, nullable, obj

__all__ = [
    "customer_bill_on_demand",
    "finalize_customer_bill",
    "get_credit_note",
    "get_customer_bill",
    "get_customer_bill_html",
    "get_customer_bill_pdf",
    "issue_credit_note",
    "list_applied_rates",
    "list_bill_credit_notes",
    "list_customer_bills",
    "void_customer_bill",
]

REPLAYED_HEADER = "Idempotent-Replayed"
BILL_ID = "bill_id"
CREDIT_NOTE_ID = "credit_note_id"
ACCOUNT_FILTER = "billingAccount.id"
#: The ``state`` filter takes TMF678's names or ours (they do not overlap).
STATE_FILTERS = {**{tmf: ours for ours, tmf in BILL_STATES.items()}, **{s: s for s in BILL_STATES}}

# --------------------------------------------------------------------------- schemas

MONEY = obj(
    {
        "unit": {**TEXT, "description": "ISO 4217 currency"},
        "value": {
            "type": "string",
            "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
            "description": "exact decimal, as many decimals as the currency has",
            "example": "32.88",
        },
    },
    ("unit", "value"),
    description="TMF Money: the value is a decimal string, never a float.",
)
REF = obj({"id": TEXT, "href": TEXT}, ("id",))
PERIOD = obj(
    {"startDateTime": nullable(TEXT), "endDateTime": nullable(TEXT)},
    description="ISO 8601 UTC; the end is excluded",
)
TAX_RATE = {"type": "string", "description": "percent, exact: 19, 5.5", "example": "19"}
TAX_ITEM = obj(
    {"taxCategory": nullable(TEXT), "taxRate": TAX_RATE, "taxAmount": MONEY},
    ("taxCategory", "taxRate", "taxAmount"),
)
CUSTOMER_BILL = obj(
    {
        "id": TEXT,
        "href": TEXT,
        "@type": TEXT,
        "billNo": {**nullable(TEXT), "description": "null until finalised"},
        "state": {"type": "string", "enum": list(TMF_BILL_STATES)},
        "lifecycleState": {"type": "string", "enum": list(BILL_STATES)},
        "category": {"type": "string", "enum": ["normal", "offCycle"]},
        "runType": {"type": "string", "enum": ["onCycle", "offCycle"]},
        "billingAccount": REF,
        "billingPeriod": PERIOD,
        "billDate": nullable(TEXT),
        "lastUpdate": nullable(TEXT),
        "amountDue": {**MONEY, "description": "the total less the bill's credit notes"},
        "remainingAmount": {**MONEY, "description": "what is still unpaid of amountDue"},
        "taxExcludedAmount": MONEY,
        "taxIncludedAmount": MONEY,
        "taxItem": array(TAX_ITEM),
        "appliedCustomerBillingRate": obj({"href": TEXT}),
        "delivery": {**nullable(DELIVERY), "description": "the latest delivery; null: none yet"},
        "voidReason": nullable(TEXT),
        "cancellationDate": nullable(TEXT),
    },
    (
        "id",
        "href",
        "billNo",
        "state",
        "lifecycleState",
        "category",
        "billingAccount",
        "billingPeriod",
        "amountDue",
        "taxExcludedAmount",
        "taxIncludedAmount",
        "taxItem",
    ),
    description="A TMF678 CustomerBill (an invoice).",
)
APPLIED_RATE = obj(
    {
        "id": TEXT,
        "@type": TEXT,
        "position": INT,
        "name": TEXT,
        "type": {
            "type": "string",
            "enum": ["recurring", "usage", "allowance", "one_off", "discount", "tax", "late_usage"],
        },
        "isBilled": BOOL,
        "date": nullable(TEXT),
        "bill": REF,
        "billingAccount": REF,
        "taxExcludedAmount": MONEY,
        "periodCoverage": PERIOD,
        "product": obj({"id": TEXT, "name": TEXT}),
        "characteristic": array(obj({"name": TEXT, "value": TEXT}, ("name", "value"))),
        "quantity": obj({"amount": INT, "units": nullable(TEXT)}, ("amount",)),
        "appliedTax": array(obj({"taxCategory": nullable(TEXT), "taxRate": TAX_RATE})),
        "appliesTo": {**nullable(INT), "description": "position of the line discounted"},
        "ratedRecords": {
            **array(TEXT),
            "description": "with ?detail=true: the ids of the rated records (and "
            "adjustment:<id>) the line sums",
        },
    },
    ("id", "position", "name", "type", "bill", "taxExcludedAmount"),
    description="A TMF678 AppliedCustomerBillingRate (an invoice line).",
)
CREDIT_NOTE = obj(
    {
        "id": TEXT,
        "href": TEXT,
        "@type": TEXT,
        "billNo": nullable(TEXT),
        "category": TEXT,
        "state": TEXT,
        "lifecycleState": TEXT,
        "bill": REF,
        "billingAccount": REF,
        "billDate": nullable(TEXT),
        "reason": TEXT,
        "taxExcludedAmount": MONEY,
        "taxIncludedAmount": MONEY,
        "taxItem": array(TAX_ITEM),
        "creditNoteItem": array(
            obj(
                {
                    "position": INT,
                    "name": TEXT,
                    "appliedCustomerBillingRate": obj({"id": TEXT, "position": INT}),
                    "taxExcludedAmount": MONEY,
                    "taxAmount": MONEY,
                },
                ("position", "appliedCustomerBillingRate", "taxExcludedAmount", "taxAmount"),
            )
        ),
    },
    ("id", "href", "billNo", "bill", "taxExcludedAmount", "taxIncludedAmount", "creditNoteItem"),
    description="A credit note correcting a final bill: positive amounts are credited.",
)
ON_DEMAND = obj(
    {
        "id": TEXT,
        "@type": TEXT,
        "state": TEXT,
        "billingAccount": REF,
        "description": nullable(TEXT),
        "customerBill": CUSTOMER_BILL,
    },
    ("id", "state", "billingAccount", "customerBill"),
    description="TMF678 CustomerBillOnDemand: done, with the bill it made.",
)

REASON = {"type": "string", "minLength": 1, "maxLength": MAX_REASON}
AMOUNT_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"
VOID_IN = obj({"reason": REASON}, ("reason",), additionalProperties=False)
CREDIT_NOTE_IN = obj(
    {
        "reason": REASON,
        "lines": array(
            obj(
                {
                    "position": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 2**31 - 1,
                        "description": "the position of the bill's line to credit",
                    },
                    "amount": {
                        "type": "string",
                        "pattern": AMOUNT_PATTERN,
                        "description": "before tax, in the bill's currency (at most its "
                        "decimals); absent: what is left of the line",
                        "example": "5.00",
                    },
                    "description": {"type": "string", "maxLength": MAX_REASON},
                },
                ("position",),
                additionalProperties=False,
            ),
            minItems=1,
            maxItems=1000,
        ),
    },
    ("reason", "lines"),
    additionalProperties=False,
)
ON_DEMAND_IN = obj(
    {
        "billingAccount": obj({"id": ID}, ("id",), additionalProperties=False),
        "description": {"type": "string", "maxLength": MAX_REASON},
    },
    ("billingAccount",),
    additionalProperties=False,
)
DOCUMENT_BODY = {"type": "string", "format": "binary", "description": "the document"}
STATE_QUERY = {"type": "string", "enum": list(STATE_FILTERS)}
DETAIL_QUERY = {"type": "string", "enum": ["true", "false"], "default": "false"}


# --------------------------------------------------------------------------- helpers


def _actor(request: web.Request) -> str:
    """Who acts, for the billing history: the token's role (tokens have no names)."""
    tokens = request.app[TOKENS_KEY]
    role = role_of_token(request.headers.get("Authorization"), tokens)
    return f"api:{role}"


def _query(request: web.Request, name: str, spec: dict[str, Any]) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    problems = schema.validate(spec, value, name)
    if problems:
        raise ApiError.invalid(problems)
    return value


def _bill_id(request: web.Request) -> str:
    return path_id(request, BILL_ID)


# --------------------------------------------------------------------------- reads


async def list_customer_bills(request: web.Request) -> web.Response:
    """The bills, newest period first; filters ``billingAccount.id`` and ``state``."""
    offset, limit = page(request)
    account = _query(request, ACCOUNT_FILTER, ID)
    state = _query(request, "state", STATE_QUERY)
    chosen = None if state is None else STATE_FILTERS[state]
    total, bills = await billing_of(request).read(
        lambda c: list_bills(c, account=account, state=chosen, limit=limit, offset=offset)
    )
    return paged(bills, total)


async def get_customer_bill(request: web.Request) -> web.Response:
    bill_id = _bill_id(request)
    return web.json_response(await billing_of(request).read(lambda c: customer_bill(c, bill_id)))


async def list_applied_rates(request: web.Request) -> web.Response:
    """The bill's lines; ``?detail=true`` adds each line's rated record ids."""
    bill_id = _bill_id(request)
    offset, limit = page(request)
    detail = _query(request, "detail", DETAIL_QUERY) == "true"
    lines = await billing_of(request).read(lambda c: applied_rates(c, bill_id, detail=detail))
    return paged(window(lines, offset, limit), len(lines))


async def list_bill_credit_notes(request: web.Request) -> web.Response:
    bill_id = _bill_id(request)
    offset, limit = page(request)
    notes = await billing_of(request).read(lambda c: credit_notes_of(c, bill_id))
    return paged(window(notes, offset, limit), len(notes))


async def get_credit_note(request: web.Request) -> web.Response:
    note_id = path_id(request, CREDIT_NOTE_ID)
    return web.json_response(await billing_of(request).read(lambda c: credit_note(c, note_id)))


async def _document(request: web.Request, fmt: str) -> web.Response:
    """The bill's document (docs/invoicing.md, "Documents"): its accounts' contacts and
    partitions from Redis, the invoice from the database, the records from the segment
    files, rendered in a thread (never on the event loop)."""
    # imported here: the renderers (Typst, Jinja2) are loaded by the first download
    from ocs.billing.documents import (
        MEDIA_TYPES,
        document_accounts,
        load_document,
        operator_of,
        render,
    )

    bill_id = _bill_id(request)
    api = api_of(request)
    database = billing_of(request)
    settings = database.settings
    accounts = await database.read(lambda c: document_accounts(c, bill_id))
    contacts, partitions = await read_document_accounts(api.redis, accounts)
    catalog = await api.catalogs.active()  # its time zone: the bill periods' local days
    zone = ZoneInfo(catalog.timezone if catalog is not None else "UTC")
    operator = operator_of(settings)
    records = api.records_directory or settings.records_directory
    now = int(time.time())

    def work(connection: Connection) -> bytes:
        document = load_document(
            connection, bill_id, operator=operator, contacts=contacts,
            partitions=partitions, records_directory=records, now=now,
            late_window=int(settings.billing_late_window),
        )  # fmt: skip
        return render(document, "pdf" if fmt == "pdf" else "html", zone)

    body = await database.read(work)
    name = f"{bill_id}.{fmt}"
    return web.Response(
        body=body,
        content_type=MEDIA_TYPES[fmt],
        charset="utf-8" if fmt == "html" else None,
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


async def get_customer_bill_pdf(request: web.Request) -> web.Response:
    return await _document(request, "pdf")


async def get_customer_bill_html(request: web.Request) -> web.Response:
    return await _document(request, "html")


# --------------------------------------------------------------------------- lifecycle


async def finalize_customer_bill(request: web.Request) -> web.Response:
    """Finalise a draft: its number is assigned; 409 when it is final or void."""
    bill_id = _bill_id(request)
    settings = billing_of(request).settings
    actor, now = _actor(request), int(time.time())

    def work(connection: Connection) -> dict[str, Any]:
        entity = connection.execute(
            select(invoices.c.entity).where(invoices.c.id == bill_id)
        ).scalar_one_or_none()
        if entity is None:
            raise DocumentNotFound(f"no customer bill {bill_id!r}")
        # a bill run makes the sequence; an off-cycle draft may be the entity's first
        ensure_sequence(connection, entity, "invoice", settings.billing_invoice_number_format)
        finalize(connection, bill_id, now=now, actor=actor)
        return customer_bill(connection, bill_id)

    return web.json_response(await billing_of(request).write(work))


async def void_customer_bill(request: web.Request) -> web.Response:
    """Void a final bill (its number stays used; its records go to the replacement the
    next bill run makes); 409 for a draft, a void bill or one with credit notes."""
    bill_id = _bill_id(request)
    body = await json_body(request, VOID_IN)
    actor, now = _actor(request), int(time.time())

    def work(connection: Connection) -> dict[str, Any]:
        void(connection, bill_id, reason=body["reason"], now=now, actor=actor)
        return customer_bill(connection, bill_id)

    return web.json_response(await billing_of(request).write(work))


def _credit_lines(body: dict[str, Any], minor_digits: int) -> list[CreditLine]:
    lines, problems = [], []
    for i, line in enumerate(body["lines"]):
        amount = None
        if "amount" in line:
            try:
                amount = parse_decimal(line["amount"], minor_digits)
            except ValueError as exc:
                problems.append((f"lines[{i}].amount", str(exc)))
        lines.append(CreditLine(line["position"], amount, line.get("description", "")))
    if problems:
        raise ApiError.refused(problems)
    return lines


def _same_request(
    connection: Connection, note_id: str, reason: str, lines: list[CreditLine]
) -> bool:
    """Whether the stored credit note ``note_id`` is what ``reason`` and ``lines`` ask."""
    stored_reason = connection.execute(
        select(credit_notes.c.reason).where(credit_notes.c.id == note_id)
    ).scalar_one()
    stored = connection.execute(
        select(invoice_items.c.position, credit_note_items.c.amount_minor)
        .join(invoice_items, invoice_items.c.id == credit_note_items.c.invoice_item_id)
        .where(credit_note_items.c.credit_note_id == note_id)
        .order_by(credit_note_items.c.position)
    ).all()
    if stored_reason != reason or [p for p, _ in stored] != [line.position for line in lines]:
        return False
    return all(
        line.amount_micro is None or line.amount_micro == amount
        for line, (_, amount) in zip(lines, stored, strict=True)
    )


async def issue_credit_note(request: web.Request) -> web.Response:
    """A credit note on a final bill, once per Idempotency-Key: 201 with the note."""
    bill_id = _bill_id(request)
    key, body = await key_and_body(request, CREDIT_NOTE_IN, per="credit note")
    settings = billing_of(request).settings
    actor, now = _actor(request), int(time.time())

    def work(connection: Connection) -> tuple[bool, dict[str, Any]]:
        digits = connection.execute(
            select(invoices.c.minor_digits).where(invoices.c.id == bill_id)
        ).scalar_one_or_none()
        if digits is None:
            raise DocumentNotFound(f"no customer bill {bill_id!r}")
        lines = _credit_lines(body, digits)
        count = select(func.count()).select_from(credit_notes)
        count = count.where(credit_notes.c.invoice_id == bill_id)
        before = connection.execute(count).scalar_one()
        note_id, _number = create_credit_note(
            connection,
            bill_id,
            lines,
            reason=body["reason"],
            now=now,
            actor=actor,
            number_format=settings.billing_credit_note_number_format,
            key=key,
        )
        replay = connection.execute(count).scalar_one() == before
        if replay and not _same_request(connection, note_id, body["reason"], lines):
            raise ApiError(
                409,
                f"{KEY_HEADER} {key!r} was used for another credit note of this bill",
                [(KEY_HEADER, "used for a different request")],
            )
        return replay, credit_note(connection, note_id)

    replay, note = await billing_of(request).write(work)
    return web.json_response(
        note,
        status=201,
        headers={
            REPLAYED_HEADER: "true" if replay else "false",
            "Location": note["href"],
        },
    )


# --------------------------------------------------------------------------- on demand


async def customer_bill_on_demand(request: web.Request) -> web.Response:
    """An off-cycle bill of one account now (account close, on demand): from the start
    of its period (or the end of its last off-cycle bill) up to now, finalised."""
    body = await json_body(request, ON_DEMAND_IN)
    key = request.headers.get(KEY_HEADER)
    if key is not None and (problem := key_problem(key)) is not None:
        raise ApiError.invalid([(KEY_HEADER, problem)])
    api = api_of(request)
    database = billing_of(request)
    settings = database.settings
    account_id = body["billingAccount"]["id"]
    catalog = await api.accounts.catalog()
    accounts = await read_billing_accounts(api.redis)
    records = api.records_directory or settings.records_directory
    options = BillRunOptions(
        entity=settings.billing_entity,
        number_format=settings.billing_invoice_number_format,
        late_window=int(settings.billing_late_window),
    )
    actor, now = _actor(request), int(time.time())

    def work(engine: Engine) -> tuple[bool, dict[str, Any]]:
        made = run_off_cycle(
            engine, catalog, accounts, records, account_id,
            until=now, options=options, now=now, actor=actor, key=key,
        )  # fmt: skip
        with engine.connect() as connection:
            return made.invoice is None, customer_bill(connection, made.id)

    replay, bill = await database.call(work)
    result = {
        "id": bill["id"],
        "@type": "CustomerBillOnDemand",
        "state": "done",
        "billingAccount": {"id": account_id, "href": f"/v1/accounts/{account_id}"},
        "description": body.get("description"),
        "customerBill": bill,
    }
    return web.json_response(
        result,
        status=201,
        headers={"Location": bill["href"], REPLAYED_HEADER: "true" if replay else "false"},
    )
