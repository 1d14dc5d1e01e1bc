"""Invoice documents: HTML and PDF from the billing database (docs/invoicing.md, "Documents").

:func:`~.model.load_document` reads an invoice into an :class:`~.model.InvoiceDocument`
(plain data, integer micro-units); :func:`~.view.document_view` writes it out in the
account's locale (Babel); :func:`render` makes the HTML (Jinja2) or the PDF (Typst)
of it. The HTML and PDF libraries are imported by the renderer modules only, and only
this package (and ``ocs/portal``) may import them (docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from .model import Carried, InvoiceDocument, Operator, document_accounts, load_document
from .view import document_view

if TYPE_CHECKING:
    from ocs.config import Settings

__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "Carried",
    "InvoiceDocument",
    "Operator",
    "document_accounts",
    "load_document",
    "operator_of",
    "render",
]

Format = Literal["pdf", "html"]
FORMATS: tuple[Format, ...] = ("pdf", "html")
MEDIA_TYPES = {"pdf": "application/pdf", "html": "text/html"}


def operator_of(settings: Settings) -> Operator:
    """The issuer of the documents as ``[documents]`` describes it (the shipped logo
    when none is set)."""
    from .html import default_logo

    address = settings.documents_operator_address
    return Operator(
        name=settings.documents_operator_name,
        address=tuple(line for line in address.split("\n") if line.strip()),
        vat_id=settings.documents_vat_id,
        support=settings.documents_support,
        logo=Path(settings.documents_logo) if settings.documents_logo else default_logo(),
        payment_terms=settings.documents_payment_terms,
        locale=settings.documents_locale,
    )


def render(document: InvoiceDocument, fmt: Format, zone: ZoneInfo) -> bytes:
    """The document as ``fmt`` (``pdf``, or ``html`` in UTF-8), dates in ``zone``."""
    view = document_view(document, zone)
    logo = document.operator.logo
    if fmt == "pdf":
        from .pdf import render_pdf

        return render_pdf(view, logo)
    if fmt == "html":
        from .html import render_html

        return render_html(view, logo).encode("utf-8")
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
