"""Every route of the management API, in one table.

Each :class:`Route` names its handler, the role it needs (``viewer`` reads, ``admin``
writes), its request body and responses (schemas from :mod:`ocs.api.schema`). The
application is built from this table (:func:`add_routes`), and so is the OpenAPI
document (:func:`ocs.api.openapi.document`), so a route cannot exist undocumented.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import (
    accounts,
    activity,
    balances,
    bills,
    bulk,
    catalog,
    common,
    deliveries,
    openapi,
    payments,
    schema,
)
from .auth import ROLE_LOOKUP_KEY

__all__ = ["ROUTES", "Route", "add_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    role: str
    summary: str
    tag: str
    #: success status -> (description, body schema or None)
    responses: dict[int, tuple[str, dict[str, Any] | None]]
    #: error statuses this route may answer besides 401 (and 403 for admin routes)
    errors: tuple[int, ...] = ()
    body: dict[str, Any] | None = None
    body_media: str = "application/json"
    #: False where an empty body is a valid request (an empty NDJSON upload applies nothing)
    body_required: bool = True
    paged: bool = False
    query: tuple[tuple[str, dict[str, Any], str], ...] = ()
    headers: tuple[tuple[str, dict[str, Any], str, bool], ...] = ()  # name, schema, doc, required
    response_headers: dict[str, str] = field(default_factory=dict)  # name -> description
    #: the media type of the success bodies (a document download is not JSON)
    response_media: str = "application/json"

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


def _ok(description: str, body: dict[str, Any] | None, status: int = 200) -> dict[int, Any]:
    return {status: (description, body)}


_KEY_HEADER = (
    (
        common.KEY_HEADER,
        {"type": "string", "pattern": schema.KEY_PATTERN, "example": "order-4711"},
        "Unique per operation: the same key again returns the first result, crediting once.",
        True,
    ),
)
_OPTIONAL_KEY_HEADER = (
    (
        common.KEY_HEADER,
        {"type": "string", "pattern": schema.KEY_PATTERN, "example": "close-acct-42"},
        "Optional: the same key again returns the bill it made, billing nothing more.",
        False,
    ),
)
_ACTION_HEADERS = {balances.REPLAYED_HEADER: "true when this answer is the stored first result"}
_CREATED = {"Location": "the URL of the resource"}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/v1/openapi.json", openapi.openapi_json, "viewer",
        "This API's OpenAPI 3 document", "meta",
        _ok("the document", schema.OPENAPI),
    ),
    # ------------------------------------------------------------------ catalog
    Route(
        "POST", "/v1/catalog/validate", catalog.validate_catalog, "viewer",
        "Check a catalog document without storing it", "catalog",
        _ok("the verdict, with every problem", schema.CATALOG_CHECK),
        errors=(400, 413), body=schema.CATALOG_IN,
    ),
    Route(
        "POST", "/v1/catalog/versions", catalog.upload_catalog, "admin",
        "Upload a catalog version (not yet active)", "catalog",
        {201: ("saved", schema.CATALOG_SAVED), 200: ("already saved, identical", schema.CATALOG_SAVED)},
        errors=(400, 409, 413), body=schema.CATALOG_IN, response_headers=_CREATED,
    ),
    Route(
        "GET", "/v1/catalog/versions/{version}", catalog.get_catalog_version, "viewer",
        "An uploaded catalog version", "catalog",
        _ok("the version", schema.CATALOG_VERSION), errors=(400, 404),
    ),
    Route(
        "GET", "/v1/catalog/active", catalog.get_active_catalog, "viewer",
        "The active catalog", "catalog",
        _ok("the active version", schema.CATALOG_VERSION), errors=(404,),
    ),
    Route(
        "PUT", "/v1/catalog/active", catalog.activate_catalog, "admin",
        "Activate an uploaded version on every node", "catalog",
        _ok("activated", schema.CATALOG_ACTIVATED), errors=(400, 413, 422), body=schema.ACTIVATE_IN,
    ),
    # ------------------------------------------------------------------ accounts
    Route(
        "GET", "/v1/accounts", accounts.list_accounts, "viewer",
        "Accounts, by id", "accounts",
        _ok("one page of accounts", schema.array(schema.ACCOUNT)), errors=(400,), paged=True,
    ),
    Route(
        "POST", "/v1/accounts", accounts.create_account, "admin",
        "Create an account with its identities and buckets (a provisioning entry)", "accounts",
        {
            201: ("created", schema.ACCOUNT_CREATED),
            200: ("the same account exists; missing identities and buckets added",
                  schema.ACCOUNT_CREATED),
        },
        errors=(400, 409, 413, 422), body=schema.ACCOUNT_IN, response_headers=_CREATED,
    ),
    Route(
        "POST", "/v1/bulk/accounts", bulk.bulk_accounts, "admin",
        "Provision many accounts: NDJSON, one account entry per line, streamed", "accounts",
        _ok("what was applied, and the lines refused", schema.BULK_RESULT),
        errors=(413, 422), body={"type": "string", "format": "binary"},
        body_media="application/x-ndjson", body_required=False,
    ),
    Route(
        "GET", "/v1/accounts/{account_id}", accounts.get_account, "viewer",
        "An account with its identities", "accounts",
        _ok("the account", schema.ACCOUNT), errors=(400, 404),
    ),
    Route(
        "PATCH", "/v1/accounts/{account_id}", accounts.patch_account, "admin",
        "Change status, plan, credit limit or billing preferences (barring aborts open "
        "sessions)", "accounts",
        _ok("the changed account", schema.ACCOUNT),
        errors=(400, 404, 409, 413, 422), body=schema.ACCOUNT_PATCH,
    ),
    Route(
        "DELETE", "/v1/accounts/{account_id}", accounts.close_account, "admin",
        "Close an account: terminal status, identities released, sessions aborted", "accounts",
        _ok("closed (again)", schema.ACCOUNT_CLOSED), errors=(400, 404),
    ),
    # ------------------------------------------------------------------ subscriptions
    Route(
        "GET", "/v1/accounts/{account_id}/subscriptions", accounts.list_subscriptions, "viewer",
        "The account's identities", "subscriptions",
        _ok("one page of identities", schema.array(schema.TEXT)), errors=(400, 404), paged=True,
    ),
    Route(
        "POST", "/v1/accounts/{account_id}/subscriptions", accounts.add_subscription, "admin",
        "Attach an identity (MSISDN, IMSI, SIP URI, NAI)", "subscriptions",
        {201: ("attached", schema.SUBSCRIPTION), 200: ("already attached", schema.SUBSCRIPTION)},
        errors=(400, 404, 409, 413, 422), body=schema.SUBSCRIPTION_IN,
    ),
    Route(
        "DELETE", "/v1/accounts/{account_id}/subscriptions/{identity}",
        accounts.remove_subscription, "admin",
        "Detach an identity", "subscriptions",
        _ok("detached", None, 204), errors=(400, 404),
    ),
    Route(
        "GET", "/v1/identities/{identity}", accounts.get_identity, "viewer",
        "The account an identity belongs to", "subscriptions",
        _ok("its account", schema.SUBSCRIPTION), errors=(400, 404),
    ),
    # ------------------------------------------------------------------ balances
    Route(
        "GET", "/v1/accounts/{account_id}/buckets", balances.list_buckets, "viewer",
        "TMF654 buckets: the account's balances one by one", "balances",
        _ok("one page of buckets", schema.array(schema.BUCKET)), errors=(400, 404), paged=True,
    ),
    Route(
        "GET", "/v1/accounts/{account_id}/buckets/{bucket_id}", balances.get_bucket, "viewer",
        "One bucket", "balances",
        _ok("the bucket", schema.BUCKET), errors=(400, 404),
    ),
    Route(
        "GET", "/v1/accounts/{account_id}/balances", balances.get_balances, "viewer",
        "The buckets summed per kind and unit", "balances",
        _ok("the balances", schema.BALANCES), errors=(400, 404),
    ),
    Route(
        "POST", "/v1/accounts/{account_id}/topupBalance", balances.topup, "admin",
        "TMF654 topupBalance: credit money or units, once per Idempotency-Key", "balances",
        {201: ("credited (or the first result of this key)", schema.BALANCE_ACTION)},
        errors=(400, 404, 409, 413, 422), body=schema.TOPUP_IN, headers=_KEY_HEADER,
        response_headers=_ACTION_HEADERS,
    ),
    Route(
        "POST", "/v1/accounts/{account_id}/adjustBalance", balances.adjust, "admin",
        "TMF654 adjustBalance: move a bucket up or down with a reason", "balances",
        {201: ("adjusted (or the first result of this key)", schema.BALANCE_ACTION)},
        errors=(400, 404, 409, 413, 422), body=schema.ADJUST_IN, headers=_KEY_HEADER,
        response_headers=_ACTION_HEADERS,
    ),
    Route(
        "GET", "/v1/accounts/{account_id}/balanceActionHistory", balances.history, "viewer",
        "TMF654 balanceActionHistory: top-ups, adjustments, refunds, credits, plan changes; "
        "newest first", "balances",
        _ok("one page of actions", schema.array(schema.BALANCE_ACTION)),
        errors=(400, 404), paged=True,
    ),
    # ------------------------------------------------------------------ activity
    Route(
        "GET", "/v1/accounts/{account_id}/sessions", activity.list_sessions, "viewer",
        "Open charging sessions with their reservations", "activity",
        _ok("one page of sessions", schema.array(schema.SESSION)),
        errors=(400, 404, 503), paged=True,
    ),
    Route(
        "GET", "/v1/accounts/{account_id}/usage", activity.list_usage, "viewer",
        "TMF635 usage: the account's rated records, oldest first", "activity",
        _ok("one page of rated records", schema.array(schema.USAGE)),
        errors=(400, 404), paged=True,
        query=(
            (
                "after",
                {"type": "string", "pattern": activity.STREAM_ID_PATTERN},
                "start after the record with this stream_id",
            ),
        ),
    ),
    # --- customer bills
    Route(
        "GET", "/v1/customerBill", bills.list_customer_bills, "viewer",
        "TMF678 customer bills (invoices), newest period first", "bills",
        _ok("one page of bills", schema.array(bills.CUSTOMER_BILL)),
        errors=(400, 503), paged=True,
        query=(
            (bills.ACCOUNT_FILTER, schema.ID, "only the bills of this billing account"),
            ("state", bills.STATE_QUERY,
             "only bills in this state: TMF678's (new, validated, cancelled) or ours "
             "(draft, final, void)"),
        ),
    ),
    Route(
        "GET", "/v1/customerBill/{bill_id}", bills.get_customer_bill, "viewer",
        "One customer bill", "bills",
        _ok("the bill", bills.CUSTOMER_BILL), errors=(400, 404, 503),
    ),
    Route(
        "GET", "/v1/customerBill/{bill_id}/appliedCustomerBillingRate",
        bills.list_applied_rates, "viewer",
        "The bill's lines (TMF678 appliedCustomerBillingRate), in invoice order", "bills",
        _ok("one page of lines", schema.array(bills.APPLIED_RATE)),
        errors=(400, 404, 503), paged=True,
        query=(("detail", bills.DETAIL_QUERY, "true: each line lists its rated record ids"),),
    ),
    Route(
        "GET", "/v1/customerBill/{bill_id}/pdf", bills.get_customer_bill_pdf, "viewer",
        "The bill as the customer reads it: a PDF (summary, charges, taxes, itemised "
        "usage when the account wants it; a draft is marked DRAFT)", "bills",
        _ok("the PDF", bills.DOCUMENT_BODY), errors=(400, 404, 503),
        response_media="application/pdf",
    ),
    Route(
        "GET", "/v1/customerBill/{bill_id}/html", bills.get_customer_bill_html, "viewer",
        "The bill as the customer reads it: one HTML page (the same content as the PDF)",
        "bills",
        _ok("the HTML page", bills.DOCUMENT_BODY), errors=(400, 404, 503),
        response_media="text/html",
    ),
    Route(
        "GET", "/v1/customerBill/{bill_id}/delivery", deliveries.get_bill_delivery, "viewer",
        "How the bill reached its customer: the latest delivery (e-mail or print batch) and "
        "every delivery of it", "bills",
        _ok("the bill's deliveries", deliveries.BILL_DELIVERY), errors=(400, 404, 503),
    ),
    Route(
        "POST", "/v1/customerBill/{bill_id}/delivery", deliveries.resend_bill, "admin",
        "Deliver a final bill again, now, on its account's channel (its e-mail address or "
        "the next print batch)", "bills",
        _ok("the bill's deliveries after the attempt", deliveries.BILL_DELIVERY),
        errors=(400, 404, 409, 503),
    ),
    Route(
        "POST", "/v1/customerBill/{bill_id}/finalize", bills.finalize_customer_bill, "admin",
        "Finalise a draft bill: its gap-free number is assigned; it never changes again",
        "bills",
        _ok("the final bill", bills.CUSTOMER_BILL), errors=(400, 404, 409, 503),
    ),
    Route(
        "POST", "/v1/customerBill/{bill_id}/void", bills.void_customer_bill, "admin",
        "Void a final bill (its number stays used; the next bill run replaces it)", "bills",
        _ok("the void bill", bills.CUSTOMER_BILL),
        errors=(400, 404, 409, 413, 422, 503), body=bills.VOID_IN,
    ),
    Route(
        "POST", "/v1/customerBill/{bill_id}/creditNote", bills.issue_credit_note, "admin",
        "Correct a final bill with a credit note, once per Idempotency-Key", "bills",
        {201: ("issued (or the first result of this key)", bills.CREDIT_NOTE)},
        errors=(400, 404, 409, 413, 422, 503), body=bills.CREDIT_NOTE_IN,
        headers=_KEY_HEADER, response_headers={**_ACTION_HEADERS, **_CREATED},
    ),
    Route(
        "GET", "/v1/customerBill/{bill_id}/creditNote", bills.list_bill_credit_notes, "viewer",
        "The credit notes of a bill, oldest first", "bills",
        _ok("one page of credit notes", schema.array(bills.CREDIT_NOTE)),
        errors=(400, 404, 503), paged=True,
    ),
    Route(
        "GET", "/v1/creditNote/{credit_note_id}", bills.get_credit_note, "viewer",
        "One credit note", "bills",
        _ok("the credit note", bills.CREDIT_NOTE), errors=(400, 404, 503),
    ),
    Route(
        "POST", "/v1/customerBillOnDemand", bills.customer_bill_on_demand, "admin",
        "TMF678 customerBillOnDemand: an off-cycle bill of one account now, finalised",
        "bills",
        {201: ("the bill made", bills.ON_DEMAND)},
        errors=(400, 413, 422, 503), body=bills.ON_DEMAND_IN, headers=_OPTIONAL_KEY_HEADER,
        response_headers={**_ACTION_HEADERS, **_CREATED},
    ),
    # --- payments
    Route(
        "GET", "/v1/payment", payments.list_payment, "viewer",
        "TMF676 payments received, newest first", "payments",
        _ok("one page of payments", schema.array(payments.PAYMENT)),
        errors=(400, 503), paged=True,
        query=((payments.ACCOUNT_FILTER, schema.ID, "only the payments of this account"),),
    ),
    Route(
        "GET", "/v1/payment/{payment_id}", payments.get_payment, "viewer",
        "One payment, with the bills it paid", "payments",
        _ok("the payment", payments.PAYMENT), errors=(400, 404, 503),
    ),
    Route(
        "POST", "/v1/payment", payments.create_payment, "admin",
        "Record a payment once per Idempotency-Key: allocated to the account's open bills "
        "oldest first, the rest kept as credit for the next bill", "payments",
        {201: ("recorded (or the first result of this key)", payments.PAYMENT)},
        errors=(400, 404, 409, 413, 422, 503), body=payments.PAYMENT_IN,
        headers=_KEY_HEADER, response_headers={**_ACTION_HEADERS, **_CREATED},
    ),
    Route(
        "GET", "/v1/accounts/{account_id}/paymentBalance", payments.get_payment_balance,
        "viewer",
        "What an account owes (its open bills, with their due dates), its credit and its "
        "dunning state", "payments",
        _ok("the balance", payments.PAYMENT_BALANCE), errors=(400, 404, 503),
    ),
    Route(
        "GET", "/v1/refund", payments.list_refund, "viewer",
        "TMF676 refunds of credit, newest first", "payments",
        _ok("one page of refunds", schema.array(payments.REFUND)),
        errors=(400, 503), paged=True,
        query=((payments.ACCOUNT_FILTER, schema.ID, "only the refunds of this account"),),
    ),
    Route(
        "GET", "/v1/refund/{refund_id}", payments.get_refund, "viewer",
        "One refund", "payments",
        _ok("the refund", payments.REFUND), errors=(400, 404, 503),
    ),
    Route(
        "POST", "/v1/refund", payments.create_refund, "admin",
        "Give back an account's credit (never more than it has), once per Idempotency-Key",
        "payments",
        {201: ("refunded (or the first result of this key)", payments.REFUND)},
        errors=(400, 404, 409, 413, 422, 503), body=payments.REFUND_IN,
        headers=_KEY_HEADER, response_headers={**_ACTION_HEADERS, **_CREATED},
    ),
)  # fmt: skip


def add_routes(app: web.Application) -> None:
    """Register every route of :data:`ROUTES` and the role each needs."""
    roles: dict[tuple[str, str], str] = {}
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, name=route.operation_id)
        roles[(route.method, route.path)] = route.role
    app[ROLE_LOOKUP_KEY] = roles
