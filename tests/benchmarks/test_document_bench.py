"""Invoice document benchmarks (issue 12: at least 20 PDFs per second per core for a
3-page invoice): one consumer invoice made by a real bill run, 100 rated records,
itemised (3 A4 pages: summary, charges and taxes, then two pages of records).

* ``test_pdf_end_to_end``: what a download costs, in one thread: the invoice, its
  lines and credit notes read from SQLite, its records read back from the segment
  file, the view written per locale (Babel), the PDF compiled (Typst);
* ``test_pdf_typst`` / ``test_html_jinja``: the renderers alone, from the view;
* ``test_pdf_typst_distinct``: Typst on a different invoice each round (every text
  of the view that holds a digit changed): what a bill run's documents cost, since
  Typst reuses the layout of what it compiled before and the same invoice again
  costs a fraction of a new one;
* ``test_pdf_weasyprint``: the route not taken, the HTML document printed by
  WeasyPrint (skipped when it is not installed: it is no dependency of ocs, and needs
  Pango from the system).

Run with ``pytest tests/benchmarks/test_document_bench.py --benchmark-only
--benchmark-enable`` (or ``make bench``). The plain test at the end runs whenever this
file is named: it checks that what is benchmarked is the 3-page invoice.
"""

from __future__ import annotations

import io

import pypdf
import pytest

from ocs.billing.documents import render
from ocs.billing.documents.html import render_html
from ocs.billing.documents.pdf import render_pdf
from ocs.billing.documents.view import document_view
from tests.ocs.billing.documents.builders import BERLIN, Billed, single

RECORDS = 100
PAGES = 3


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Billed:
    return single(tmp_path_factory.mktemp("documents"), records=RECORDS, finalize=True)


def pages(pdf: bytes) -> int:
    return len(pypdf.PdfReader(io.BytesIO(pdf)).pages)


def test_pdf_end_to_end(benchmark, billed):
    pdf = benchmark(lambda: render(billed.document("erika"), "pdf", BERLIN))
    assert pages(pdf) == PAGES


def test_pdf_typst(benchmark, billed):
    document = billed.document("erika")
    view = document_view(document, BERLIN)
    pdf = benchmark(render_pdf, view, document.operator.logo)
    assert pages(pdf) == PAGES


def _distinct(view: object, round_number: int) -> object:
    """``view`` with every text that holds a digit changed (amounts, dates, numbers):
    another invoice of the same shape, whose layout Typst cannot take from its cache."""
    if isinstance(view, dict):
        return {key: _distinct(value, round_number) for key, value in view.items()}
    if isinstance(view, list):
        return [_distinct(value, round_number) for value in view]
    if isinstance(view, str) and any(c.isdigit() for c in view):
        return f"{view}{round_number}"
    return view


def test_pdf_typst_distinct(benchmark, billed):
    document = billed.document("erika")
    view = document_view(document, BERLIN)
    rounds = iter(range(1_000_000))

    def another() -> tuple[tuple[object, ...], dict[str, object]]:
        return (_distinct(view, next(rounds)), document.operator.logo), {}

    pdf = benchmark.pedantic(render_pdf, setup=another, rounds=40, warmup_rounds=2)
    assert pages(pdf) == PAGES


def test_html_jinja(benchmark, billed):
    document = billed.document("erika")
    view = document_view(document, BERLIN)
    html = benchmark(render_html, view, document.operator.logo)
    assert html.count("<tr>") > RECORDS


def test_pdf_weasyprint(benchmark, billed):
    weasyprint = pytest.importorskip("weasyprint")
    document = billed.document("erika")
    html = render_html(document_view(document, BERLIN), document.operator.logo)
    pdf = benchmark.pedantic(
        lambda: weasyprint.HTML(string=html).write_pdf(), rounds=10, warmup_rounds=1
    )
    assert pages(pdf) == PAGES


def test_the_benchmarked_invoice_is_three_pages_with_every_record(billed):
    document = billed.document("erika")
    assert len(document.itemised) == RECORDS and document.records_missing == 0
    assert pages(render(document, "pdf", BERLIN)) == PAGES
