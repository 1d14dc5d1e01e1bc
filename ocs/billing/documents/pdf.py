"""The PDF document: the view (:mod:`.view`) through the Typst template shipped in
``templates/invoice.typ``, compiled in-process by the ``typst`` package (its compiler is
bundled in the wheel: no browser, no system library).

Why Typst: the same 3-page invoice took about 6 ms here and about 130 ms with
WeasyPrint from the HTML document (docs/benchmarks.md, "Invoice documents"); its
tables repeat their headers across pages and it counts pages itself. The fonts are
the DejaVu Sans shipped in ``assets/fonts`` (system fonts are ignored), so a PDF looks
the same on every machine. A compiler is made once per thread (fonts loaded once) and
reused: it is not shared between threads.
"""

from __future__ import annotations

import json
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import typst

__all__ = ["DocumentRenderError", "render_pdf"]

_ASSETS = resources.files(__package__)
_TEMPLATE = _ASSETS.joinpath("templates", "invoice.typ").read_bytes()
_FONTS = str(_ASSETS.joinpath("assets", "fonts"))
_local = threading.local()


class DocumentRenderError(RuntimeError):
    """The template could not be compiled (a defect, or a logo file that cannot be read)."""


def _compiler() -> typst.Compiler:
    compiler: typst.Compiler | None = getattr(_local, "compiler", None)
    if compiler is None:
        compiler = typst.Compiler(font_paths=[_FONTS], ignore_system_fonts=True)
        _local.compiler = compiler
    return compiler


def render_pdf(view: dict[str, Any], logo: Path | None) -> bytes:
    """The PDF of ``view`` with ``logo`` (a PNG, JPEG or SVG file; None: none)."""
    inputs = {"data": json.dumps(view, ensure_ascii=False)}
    root = None
    if logo is not None:
        root = str(logo.resolve().parent)
        inputs["logo"] = "/" + logo.name
    try:
        pdf = _compiler().compile(input=_TEMPLATE, format="pdf", sys_inputs=inputs, root=root)
    except typst.TypstError as error:
        raise DocumentRenderError(f"the PDF could not be made: {error.message}") from error
    if not isinstance(pdf, bytes):
        raise DocumentRenderError("the PDF compiler returned no document")
    return pdf
