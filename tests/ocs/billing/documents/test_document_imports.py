"""The HTML and PDF libraries are imported only by the documents (ocs/billing/documents)
and the portal (ocs/portal) (DESIGN: the layout's import rules), and the rest of ocs
loads without them: the renderers are imported when a document is made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.test_import_rules import imported_modules

ROOT = Path(__file__).resolve().parents[4]
DOCUMENT_LIBRARIES = {"typst", "jinja2", "markupsafe", "weasyprint", "reportlab", "pypdf"}
ALLOWED = ("ocs/billing/documents/", "ocs/portal/")


def test_document_libraries_only_in_documents_and_portal():
    offenders = []
    for package in ("cext", "protocol", "quota_engine", "ocs", "loadtest"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith(ALLOWED):
                continue
            found = imported_modules(path) & DOCUMENT_LIBRARIES
            if found:
                offenders.append(f"{relative}: {', '.join(sorted(found))}")
    assert offenders == []


def test_the_api_and_the_cli_load_without_the_renderers():
    code = (
        "import sys, ocs.api.app, ocs.cli, ocs.billing.invoice_commands, ocs.billing.documents;"
        "print(sorted(m for m in ('typst', 'jinja2') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
