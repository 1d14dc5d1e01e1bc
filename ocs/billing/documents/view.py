"""An :class:`~.model.InvoiceDocument` written out for the renderers: every value a
string in the account's locale, in the order the pages show them.

Both renderers (HTML through Jinja2, PDF through Typst) take this one view, so the two
documents say the same thing; it is plain JSON (the PDF template reads it as such).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from .formatting import Formatter
from .model import DAY, InvoiceDocument, ItemisedRecord

__all__ = ["document_view", "formatter_of"]

_KIND_NAMES = {
    "recurring": "Monthly charges",
    "one_off": "One-off charges and credits",
    "discount": "Discounts",
    "allowance": "Allowances",
}
_SERVICE_NAMES = {"data": "Data", "voice": "Calls", "sms": "Messages"}


def formatter_of(document: InvoiceDocument, zone: ZoneInfo) -> Formatter:
    locale = document.customer.locale or document.operator.locale
    return Formatter.of(locale, document.currency, document.minor_digits, zone)


def _service_name(service: str) -> str:
    return _SERVICE_NAMES.get(service, _KIND_NAMES.get(service, service.replace("_", " ").title()))


def _category_name(category: str | None) -> str:
    if not category:
        return ""
    return ", ".join(part.replace("-", " ") for part in category.split("/"))


def _identity(identity: str | None) -> str:
    if not identity:
        return ""
    kind, _, value = identity.partition(":")
    return f"+{value}" if kind == "msisdn" else value


def _number_or_apn(record: ItemisedRecord) -> str:
    """What the "Number / APN" column shows: the APN of data (octets), else the number
    called or the SMS recipient, as recorded; empty when the record does not say."""
    value = record.apn if record.unit == "octets" else record.called
    return value or ""


def _record_row(record: ItemisedRecord, f: Formatter) -> dict[str, str]:
    at = record.start if record.start is not None else record.end
    return {
        "date": f.short_date(at),
        "time": f.time(at),
        "line": _identity(record.identity),
        "service": _service_name(record.service),
        "number": _number_or_apn(record),
        "destination": (record.destination or record.band or "").replace("-", " "),
        "zone": (record.zone or "").replace("-", " "),
        "quantity": f.quantity(record.used, record.unit),
        "charge": f.exact_money(record.charged),
    }


def document_view(document: InvoiceDocument, zone: ZoneInfo) -> dict[str, Any]:
    """The document as strings (see the module doc), dates in ``zone``."""
    f = formatter_of(document, zone)
    d = document
    operator, customer = d.operator, d.customer
    period = f"{f.date(d.period_start)} – {f.date(d.period_end - DAY)}"
    if d.off_cycle:
        period = f"{f.date(d.period_start)} – {f.date(d.period_end)}"
    number = d.number or "DRAFT"
    summary = [
        ["Previous balance", f.money(d.carried.previous_balance)],
        ["Payments received, thank you", f.money(-d.carried.payments)],
    ]
    if d.carried.refunds:
        summary.append(["Credit paid back to you", f.money(d.carried.refunds)])
    if d.carried.adjustments:
        summary.append(["Corrections of earlier invoices", f.money(d.carried.adjustments)])
    summary.append(["New charges", f.money(d.total)])
    if d.credit_notes:
        summary.append(["Credit notes", f.money(-d.credited)])
    sections = []
    for section in d.sections:
        contact = section.contact
        title = "Account charges"
        if section.child:
            title = f"Line {section.account}" + (f" · {contact.name}" if contact.name else "")
        sections.append(
            {
                "title": title,
                "subtotal": f.money(section.subtotal),
                "lines": [
                    {
                        "description": line.description,
                        "detail": (
                            f"{f.short_date(line.period_start)} – "
                            f"{f.short_date(line.period_end - DAY)}"
                            if line.kind == "recurring"
                            and line.period_start is not None
                            and line.period_end is not None
                            else _category_name(line.category)
                            if line.kind not in ("usage", "late_usage")
                            else ""
                        ),
                        "quantity": ""
                        if line.quantity is None
                        else f.quantity(line.quantity, line.unit),
                        "amount": f.money(line.amount),
                    }
                    for line in section.lines
                ],
            }
        )
    itemised: list[dict[str, Any]] = []
    for record in d.itemised:
        if not itemised or itemised[-1]["account"] != record.account:
            itemised.append({"account": record.account, "title": "", "rows": []})
        itemised[-1]["rows"].append(_record_row(record, f))
    names = {s.account: s.contact.name for s in d.sections}
    for group in itemised:
        name = names.get(group["account"])
        group["title"] = f"Itemised usage · {group['account']}" + (f" · {name}" if name else "")
    return {
        "draft": d.draft,
        "state": d.state,
        "title": "Invoice" + (" (off-cycle)" if d.off_cycle else ""),
        "number": number,
        "locale": str(f.locale),
        "operator": {
            "name": operator.name,
            "address": list(operator.address),
            "vat_id": operator.vat_id,
            "support": operator.support,
        },
        "customer": {
            "name": customer.name or d.account,
            "address": customer.address.split("\n") if customer.address else [],
            "email": customer.email or "",
        },
        "facts": [
            ["Invoice number", number],
            ["Account", d.account],
            ["Billing period", period],
            ["Issue date", f.date(d.issued_at)],
            ["Due date", f.date(d.due_at)],
        ],
        "summary": summary,
        "amount_due": f.money(d.amount_due),
        "due_date": f.date(d.due_at),
        "void": d.state == "void",
        "sections": sections,
        "services": [
            {
                "service": _service_name(s.service),
                "category": _category_name(s.category),
                "quantity": "" if s.quantity is None else f.quantity(s.quantity, s.unit),
                "amount": f.money(s.amount),
            }
            for s in d.by_service
        ],
        "taxes": [
            {
                "label": t.category or "tax",
                "rate": f.rate(t.rate_ppm),
                "base": f.money(t.base),
                "amount": f.money(t.amount),
            }
            for t in d.taxes
        ],
        "tax_exempt": d.tax_exempt,
        "subtotal": f.money(d.subtotal),
        "tax": f.money(d.tax),
        "total": f.money(d.total),
        "credit_notes": [
            {"number": n.number, "date": f.date(n.issued_at), "total": f.money(n.total)}
            for n in d.credit_notes
        ],
        "itemised": itemised,
        "records_missing": d.records_missing,
        "itemisation": d.itemisation,
        "payment_note": (
            "This is a draft: it may still change and is not a request for payment."
            if d.draft
            else "This invoice is void: nothing is due on it."
            if d.state == "void"
            else f"Please pay {f.money(d.amount_due)} by {f.date(d.due_at)}, quoting {number}."
        ),
    }
