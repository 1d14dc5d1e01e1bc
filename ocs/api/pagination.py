"""Lists: ``?offset=N&limit=M`` in, a JSON array and ``X-Total-Count`` out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from .errors import ApiError

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MAX_OFFSET", "page", "paged", "window"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 10**9
TOTAL_HEADER = "X-Total-Count"

OFFSET_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}
LIMIT_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}


def _int(
    request: web.Request, name: str, default: int, low: int, high: int
) -> tuple[int, str | None]:
    text = request.query.get(name)
    if text is None:
        return default, None
    text = text.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 12 or not low <= int(text) <= high:
        return default, f"must be an integer from {low} to {high}"
    return int(text), None


def page(request: web.Request) -> tuple[int, int]:
    """``(offset, limit)`` of the request; 400 naming the bad parameter(s)."""
    offset, bad_offset = _int(request, "offset", 0, 0, MAX_OFFSET)
    limit, bad_limit = _int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    problems = [(n, m) for n, m in (("offset", bad_offset), ("limit", bad_limit)) if m]
    if problems:
        raise ApiError.invalid(problems)
    return offset, limit


def window(items: Sequence[Any], offset: int, limit: int) -> list[Any]:
    return list(items[offset : offset + limit])


def paged(items: list[Any], total: int) -> web.Response:
    """One page of a list: the items as a JSON array, the list's size in X-Total-Count."""
    return web.json_response(items, headers={TOTAL_HEADER: str(total)})
