"""What an account is doing: its open sessions with their reservations, and its rated
records (TMF635 usage): those the exporter wrote to the segment files of this node's
``records.directory`` and those still in Redis, each once
(:func:`ocs.records.account_records.read_account_records`)."""

from __future__ import annotations

import re

from aiohttp import web

from ocs.records.account_records import read_account_records

from .common import jsonable, path_id, require_account
from .context import api_of
from .errors import ApiError
from .pagination import page, paged, window

#: A record's stream id as ``after`` takes it: milliseconds and a sequence number, each at
#: most 19 digits, so that both fit Redis's unsigned 64-bit parts (a 20-digit part may
#: not, and Redis would refuse the command). The OpenAPI document states the same.
STREAM_ID_PATTERN = r"^[0-9]{1,19}-[0-9]{1,19}$"
STREAM_ID = re.compile(STREAM_ID_PATTERN[1:-1])


async def list_sessions(request: web.Request) -> web.Response:
    """Open sessions, soonest deadline first, each with its reservations per rating group."""
    api = api_of(request)
    account_id = path_id(request)
    offset, limit = page(request)
    await require_account(api, account_id)
    if api.sessions is None:
        raise ApiError(503, "this node has no charging engine; sessions are not available")
    sessions = await api.sessions.sessions_of(account_id)
    return paged(jsonable(window(sessions, offset, limit)), len(sessions))


async def list_usage(request: web.Request) -> web.Response:
    """Rated records in the order they were written (stream-id order), exported to
    segment files or still in Redis. ``after`` (a record's ``stream_id``) starts after
    that record: cheaper than a large ``offset`` for walking the list.
    ``X-Total-Count`` counts all of the account's records, whatever ``after``."""
    api = api_of(request)
    account_id = path_id(request)
    offset, limit = page(request)
    after = request.query.get("after")
    if after is not None and not STREAM_ID.fullmatch(after):
        raise ApiError.invalid(
            [
                (
                    "after",
                    "must be a stream id such as 1741338000000-0 (two numbers of 1 to 19 digits)",
                )
            ]
        )
    await require_account(api, account_id)
    found = await read_account_records(api.redis, api.records_directory, account_id)
    records = found.records if after is None else found.after(after)
    return paged(jsonable(window(records, offset, limit)), len(found.records))
