"""Invoice document benchmarks (issue 12: at least 20 PDFs per second per core for a
3-page invoice): one consumer invoice made by a real bill run, 100 rated records,
itemised (3 A4 pages: summary, charges and taxes, then two pages of records).

* ``test_pdf_end_to_end``: what a download costs, in one thread: the invoice, its
  lines and credit notes read from SQLite, its records read back from the segment
  file, the view written per locale (Babel), the PDF compiled (Typst);
* ``test_pdf_typst`` / ``test_html_jinja``: the renderers alone, from the view;
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
