"""Helpers the handlers share: path parameters, validated bodies, the account resource."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from quota_engine.accounts.balance_actions import CLOSED, key_problem
from quota_engine.accounts.model import Account, identity_problem

from . import schema
from .context import Api, read_json
from .errors import ApiError

__all__ = [
    "PATH_PARAMETERS",
    "account_resource",
    "json_body",
    "jsonable",
    "open_account",
    "path_identity",
    "path_id",
    "require_account",
]

#: Every path parameter of the routes: its schema (documented in the OpenAPI document).
PATH_PARAMETERS: dict[str, schema.Schema] = {
    "account_id": {**schema.ID, "example": "demo-prepaid"},
    "bucket_id": {**schema.ID, "example": "main"},
    "bill_id": {**schema.ID, "example": "in_3f2a9c0d1e4b5a6f7081"},
    "credit_note_id": {**schema.ID, "example": "cn_0a1b2c3d4e5f60718293"},
    "payment_id": {**schema.ID, "example": "pay_0a1b2c3d4e5f60718293"},
    "refund_id": {**schema.ID, "example": "ref_0a1b2c3d4e5f60718293"},
    "identity": schema.IDENTITY,
    "version": {"type": "string", "minLength": 1, "maxLength": 200, "example": "demo-1"},
}
_ID = re.compile(schema.ID_PATTERN[1:-1])
MAX_DEPTH = 32


def path_id(request: web.Request, name: str = "account_id") -> str:
    """An id from the path (account or bucket); 400 naming the parameter when malformed."""
    value = request.match_info[name]
    if not _ID.fullmatch(value):
        raise ApiError.invalid([(name, f"must match {schema.ID_PATTERN}")])
    return value


def path_identity(request: web.Request) -> str:
    value = request.match_info["identity"]
    problem = identity_problem(value)
    if problem is not None:
        raise ApiError.invalid([("identity", problem)])
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _not_unicode(value: Any) -> list[tuple[str, str]]:
    """Every string (or key) of ``value`` that is not Unicode text: JSON lets ``"\\ud800"``
    through, but no store can encode an unpaired surrogate (RFC 7493 forbids them)."""
    problems: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if not _encodable(key):
                    problems.append((path or "body", "a key holds an unpaired surrogate"))
                else:
                    stack.append((child, name))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, str) and not _encodable(item):
            problems.append((path or "body", "holds an unpaired surrogate: not Unicode text"))
    return sorted(problems)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_body(spec: schema.Schema, body: Any) -> Any:
    """``body`` when it matches ``spec``; else 400 naming every bad field."""
    if _depth(body) > MAX_DEPTH:
        raise ApiError.invalid([("body", f"is nested deeper than {MAX_DEPTH} levels")])
    if surrogates := _not_unicode(body):
        raise ApiError.invalid(surrogates)
    problems = schema.validate(spec, body)
    if problems:
        raise ApiError.invalid(problems)
    return body


async def json_body(request: web.Request, spec: schema.Schema) -> Any:
    """The JSON body, checked against ``spec``."""
    return check_body(spec, await read_json(request))


KEY_HEADER = "Idempotency-Key"
"""The header that makes a write happen once (top-ups, adjustments, credit notes)."""


async def key_and_body(
    request: web.Request, spec: schema.Schema, *, per: str
) -> tuple[str, dict[str, Any]]:
    """The Idempotency-Key and the JSON body checked against ``spec``; one 400 naming
    every problem of both. ``per`` completes "a unique key per ..." in the message."""
    key = request.headers.get(KEY_HEADER)
    problems = []
    if key is None:
        problems.append((KEY_HEADER, f"is required: a unique key per {per}"))
    elif (problem := key_problem(key)) is not None:
        problems.append((KEY_HEADER, problem))
    try:
        body = await json_body(request, spec)
    except ApiError as exc:
        if exc.status != 400:
            raise
        raise ApiError.invalid(problems + exc.fields) from None
    if problems or key is None:
        raise ApiError.invalid(problems)
    return key, body


async def require_account(api: Api, account_id: str) -> Account:
    account = await api.accounts.get_account(account_id)
    if account is None:
        raise ApiError(404, f"no account {account_id!r}", [("account_id", "no such account")])
    return account


async def open_account(api: Api, account_id: str) -> Account:
    """The account, which must exist (404) and not be closed (422)."""
    account = await require_account(api, account_id)
    if account.status == CLOSED:
        raise ApiError(422, f"account {account_id!r} is closed", [("account_id", "is closed")])
    return account


async def account_resource(api: Api, account: Account) -> dict[str, Any]:
    data = account.to_dict()
    data["subscriptions"] = await api.accounts.subscriptions(account.id)
    return data


def jsonable(value: Any) -> Any:
    """``value`` with bytes decoded (UTF-8, replacing), tuples as lists, keys as strings."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
