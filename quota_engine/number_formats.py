"""Document number formats (``INV-{seq:06d}``, ``{entity}-{seq}``): the one check of a
format and the one way a number is written from it. Here, below both users: the catalog
parser checks a reseller's formats with it, and the billing numbering (``ocs.billing.
numbering``) checks the operator's and writes every number."""

from __future__ import annotations

import string

__all__ = ["check_format", "format_number"]

_FIELDS = frozenset({"seq", "entity"})


def check_format(form: str, entity: str = "E") -> str:
    """``form`` if it is a valid number format: text with ``{seq}`` (optionally with a
    format spec such as ``{seq:06d}``) and optionally ``{entity}``, whose numbers for
    ``entity`` fit the 64 characters of the number columns; else ValueError."""
    fields = set()
    try:
        for _literal, field, spec, conversion in string.Formatter().parse(form):
            if field is None:
                continue
            if field not in _FIELDS or conversion is not None:
                raise ValueError(f"unknown field {{{field}}}")
            if field == "entity" and spec:
                raise ValueError("{entity} takes no format spec")
            fields.add(field)
        form.format(seq=1, entity="E")
    except (ValueError, IndexError) as exc:
        raise ValueError(f"number format {form!r}: {exc}") from None
    if "seq" not in fields:
        raise ValueError(f"number format {form!r}: needs {{seq}}")
    if len(form.format(seq=10**12, entity=entity)) > 64:
        raise ValueError(f"number format {form!r}: numbers longer than 64 characters")
    return form


def format_number(form: str, entity: str, value: int) -> str:
    """The number ``value`` of ``entity``'s sequence, written in ``form``."""
    return form.format(seq=value, entity=entity)
