"""The HTML document: the view (:mod:`.view`) through the Jinja2 template shipped in
``templates/`` (package data), autoescaped; the logo is embedded as a ``data:`` URI so
the page stands alone (a download, an e-mail body). The same page, printed by a browser
or by WeasyPrint, paginates as the PDF does (``@page`` rules, repeated table heads).
"""

from __future__ import annotations

import base64
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

__all__ = ["TEMPLATES", "default_logo", "logo_data_uri", "render_html"]

TEMPLATES = "templates"
_MEDIA = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def default_logo() -> Path:
    """The logo shipped with ocs (``assets/logo.svg``)."""
    return Path(str(resources.files(__package__).joinpath("assets", "logo.svg")))


def logo_data_uri(path: Path) -> str:
    media = _MEDIA.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{media};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _css_string(value: Any) -> Markup:
    """``value`` as a CSS string literal, safe inside a ``<style>`` element."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("<", "\\3c ")
    return Markup(f'"{text}"')


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["css_string"] = _css_string
    return environment


def render_html(view: dict[str, Any], logo: Path | None) -> str:
    """The invoice page of ``view``, with ``logo`` (None: none) embedded."""
    template = _environment().get_template("invoice.html.j2")
    return template.render(v=view, logo=logo_data_uri(logo) if logo is not None else None)
