"""``/v1/customerBill/{id}/delivery``: how and whether a bill reached its customer
(docs/invoicing.md, "Delivery"), and a resend.

``GET`` answers the latest delivery (``delivery``, the same object as the bill's own
``delivery``) and every delivery of the bill, the first one first; ``POST`` delivers a
final bill again on its account's channel now (the account's e-mail address or the
next print batch) and answers the same, after the attempt: 409 for a draft or void
bill or one whose delivery is still under way, 404 for an unknown one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, Engine

from ocs.billing.delivery.status import deliveries_of, delivery_json
from ocs.billing.lifecycle import DocumentNotFound
from ocs.billing.schema import invoices
from ocs.billing_source import read_document_accounts
from quota_engine.accounts.model import DELIVERIES

from .common import path_id
from .context import api_of, billing_of
from .schema import INT, TEXT, array, nullable, obj

__all__ = ["BILL_DELIVERY", "DELIVERY", "get_bill_delivery", "resend_bill"]

DELIVERY = obj(
    {
        "channel": {"type": "string", "enum": list(DELIVERIES)},
        "state": {
            "type": "string",
            "enum": ["pending", "sending", "sent", "failed", "printed"],
            "description": "sent: accepted by the SMTP server; printed: in a print batch",
        },
        "attempts": INT,
        "resends": {**INT, "description": "0 for the delivery made at issue, then 1, 2, ..."},
        "recipient": nullable(TEXT),
        "messageId": nullable(TEXT),
        "printBatch": nullable(TEXT),
        "sentDate": nullable(TEXT),
        "nextAttemptDate": nullable(TEXT),
        "lastError": nullable(TEXT),
        "lastUpdate": nullable(TEXT),
    },
    ("channel", "state", "attempts"),
    description="How a bill reached (or is to reach) its customer.",
)
BILL_DELIVERY = obj(
    {
        "id": TEXT,
        "href": TEXT,
        "delivery": {**nullable(DELIVERY), "description": "the latest; null: none yet"},
        "deliveries": array(DELIVERY),
    },
    ("id", "delivery", "deliveries"),
)


def _answer(connection: Connection, bill_id: str) -> dict[str, Any]:
    if connection.execute(invoices.select().where(invoices.c.id == bill_id)).first() is None:
        raise DocumentNotFound(f"no customer bill {bill_id!r}")
    found = deliveries_of(connection, bill_id)
    return {
        "id": bill_id,
        "href": f"/v1/customerBill/{bill_id}/delivery",
        "delivery": delivery_json(found[-1]) if found else None,
        "deliveries": [delivery_json(status) for status in found],
    }


async def get_bill_delivery(request: web.Request) -> web.Response:
    bill_id = path_id(request, "bill_id")
    return web.json_response(await billing_of(request).read(lambda c: _answer(c, bill_id)))


async def resend_bill(request: web.Request) -> web.Response:
    """Deliver the bill again now (module doc), in a thread of the billing database."""
    from ocs.billing.delivery.run import options_of, resend
    from ocs.billing.documents import document_accounts

    bill_id = path_id(request, "bill_id")
    api, database = api_of(request), billing_of(request)
    accounts = await database.read(lambda c: document_accounts(c, bill_id))
    contacts, partitions = await read_document_accounts(api.redis, accounts)
    catalog = await api.catalogs.active()
    zone = catalog.timezone if catalog is not None else "UTC"
    options = options_of(database.settings)
    if api.records_directory is not None:
        options = replace(options, records_directory=api.records_directory)

    def work(engine: Engine) -> dict[str, Any]:
        resend(engine, options, lambda ids: (contacts, partitions, zone), bill_id,
               now=int(time.time()))  # fmt: skip
        with engine.connect() as connection:
            return _answer(connection, bill_id)

    return web.json_response(await database.call(work))
