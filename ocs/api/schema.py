"""JSON schemas of the API, and the validator that checks request bodies against them.

The same dicts are the request and response schemas of the OpenAPI document
(:mod:`ocs.api.openapi`) and what :func:`validate` checks, so the documentation and
the checks cannot drift. They use the subset of OpenAPI 3.0 schemas that
:func:`validate` understands: ``type`` (object, array, string, integer, boolean),
``nullable``, ``enum``, ``minimum``/``maximum``, ``minLength``/``maxLength``,
``pattern``, ``properties``/``required``/``additionalProperties``/``minProperties``,
``items``/``minItems``/``maxItems``/``uniqueItems``, ``not``, and ``format`` when it
names a checker of :data:`FORMATS` (``identity``: the checker's message is more useful
than "must match <pattern>"); ``description``, ``example`` and ``default`` are
documentation only. ``pattern`` is read as ECMA-262 reads it (the OpenAPI dialect):
``$`` is the end of the string, never before a final newline as in Python.

Every constraint the stores would refuse and a schema can state is stated here (an
identity's form, a non-zero adjustment), so that a request the document allows is not
answered 400; what a schema cannot state (an unknown plan, ``valid_to`` before
``valid_from``) is answered 422 (see :mod:`ocs.api.errors`).

Bodies are checked for shape here; the stores then check meaning (a plan the catalog
knows, an identity no other account holds) and name the field the same way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from quota_engine.accounts.balance_actions import CLOSED, MAX_REASON
from quota_engine.accounts.model import (
    ACCOUNT_KINDS,
    BUCKET_KINDS,
    BUCKET_UNITS,
    DELIVERIES,
    ITEMISATIONS,
    MAX_ADDRESS_LINE,
    MAX_ADDRESS_LINES,
    MAX_EMAIL,
    MAX_NAME,
    STATUSES,
    identity_problem,
)
from quota_engine.store.limits import MAX_AMOUNT

Schema = dict[str, Any]

MAX = MAX_AMOUNT
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
KEY_PATTERN = r"^[A-Za-z0-9._:~-]{1,128}$"


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def _space_class() -> str:
    """Python's ``\\s`` (``str.isspace``) spelled out as ranges of ``\\uXXXX``: the same
    set in ECMA-262, whose own ``\\s`` differs (no U+001C-U+001F nor U+0085, but U+FEFF)."""
    spaces = [c for c in range(0x10000) if chr(c).isspace()]
    ranges: list[list[int]] = []
    for c in spaces:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


_SPACE = _space_class()
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
#: The forms :func:`quota_engine.accounts.model.identity_problem` accepts, as one pattern
#: that means the same in ECMA-262 and Python (tests/ocs/api/test_schema_identity.py
#: checks that the two agree).
IDENTITY_PATTERN = (
    r"^(?:msisdn:[1-9][0-9]{6,14}"
    r"|imsi:[0-9]{15}"
    rf"|sip:sips?:(?:[^{_SPACE}@;]+@)?{_HOST}(?::[0-9]{{1,5}})?"
    rf"|nai:[^{_SPACE}@]+@{_HOST})$"
)

ID = {"type": "string", "pattern": ID_PATTERN, "maxLength": 64}
TEXT = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
SECONDS = {"type": "integer", "minimum": 0, "maximum": MAX, "description": "Unix seconds"}
IDENTITY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": IDENTITY_PATTERN,
    "format": "identity",
    "description": '"type:value": msisdn:491700000001, imsi:..., sip:sip:alice@example.net, nai:u@realm',
    "example": "msisdn:491700000001",
}
TAX_EXEMPT = {**BOOL, "default": False, "description": "invoices carry no tax"}
BILL_SEPARATELY = {
    **BOOL,
    "default": False,
    "description": "a child account invoiced on its own, not on its parent's invoice",
}
ITEMISATION = {
    "type": "string",
    "enum": list(ITEMISATIONS),
    "default": "detailed",
    "description": "what invoice documents show: every rated record, or the lines only",
}
RESELLER = {
    **ID,
    "description": "the reseller partner (catalog resellers id) whose subscriber the account "
    "is: its invoices are issued under the reseller's billing entity, numbering, name and "
    "logo; unset: the operator's",
    "example": "nordic-mobile",
}
CONTACT_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NAME,
    "description": "the customer's name as the invoice documents address it",
    "example": "Alice Example",
}
CONTACT_ADDRESS = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ADDRESS_LINES * (MAX_ADDRESS_LINE + 1),
    "description": f"postal address, at most {MAX_ADDRESS_LINES} lines separated by \\n",
    "example": "Musterstraße 1\n10115 Berlin\nGermany",
}
CONTACT_LOCALE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 32,
    "description": "language_TERRITORY known to CLDR (de_DE, en_GB): how the documents "
    "write amounts and dates; unset: the operator's documents.locale",
    "example": "de_DE",
}
CONTACT_EMAIL = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_EMAIL,
    "description": "where final invoices are e-mailed",
    "example": "alice@example.net",
}
DELIVERY = {
    "type": "string",
    "enum": list(DELIVERIES),
    "default": "email",
    "description": "how final invoices reach the customer: e-mailed, or printed and posted",
}
CONTACT_IN: dict[str, Schema] = {
    "name": CONTACT_NAME,
    "address": CONTACT_ADDRESS,
    "locale": CONTACT_LOCALE,
    "email": CONTACT_EMAIL,
    "delivery": DELIVERY,
}
UNIT = {
    "type": "string",
    "description": "the account currency for money, else octets, seconds or events",
}

# --------------------------------------------------------------------------- requests

BUCKET_IN = obj(
    {
        "id": ID,
        "kind": {"type": "string", "enum": list(BUCKET_KINDS), "default": "money"},
        "unit": {"type": "string", "enum": list(BUCKET_UNITS)},
        "amount": {"type": "integer", "minimum": 0, "maximum": MAX},
        "priority": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        "valid_from": SECONDS,
        "valid_to": SECONDS,
        "services": array(TEXT, maxItems=100),
        "replace": BOOL,
    },
    ("id", "amount"),
    additionalProperties=False,
)

ACCOUNT_IN = obj(
    {
        "id": ID,
        "kind": {"type": "string", "enum": list(ACCOUNT_KINDS)},
        "plan": {"type": "string", "minLength": 1, "maxLength": 200},
        "status": {"type": "string", "enum": list(STATUSES), "default": "active"},
        "currency": {
            "type": "string",
            "pattern": "^[A-Z]{3}$",
            "description": "default: the catalog's",
        },
        "credit_limit": {"type": "integer", "minimum": 0, "maximum": MAX},
        "bill_cycle_day": {"type": "integer", "minimum": 1, "maximum": 28},
        "parent": ID,
        "tax_exempt": TAX_EXEMPT,
        "bill_separately": BILL_SEPARATELY,
        "itemisation": ITEMISATION,
        "reseller": RESELLER,
        **CONTACT_IN,
        "subscriptions": array(IDENTITY, maxItems=100),
        "buckets": array(BUCKET_IN, maxItems=100),
        "allowances": array(TEXT, maxItems=100),
    },
    ("id", "kind", "plan"),
    additionalProperties=False,
    description="A provisioning account entry (docs/provisioning.md) without `replace`.",
)

ACCOUNT_PATCH = obj(
    {
        "status": {"type": "string", "enum": list(STATUSES)},
        "plan": {"type": "string", "minLength": 1, "maxLength": 200},
        "credit_limit": {"type": "integer", "minimum": 0, "maximum": MAX},
        "tax_exempt": BOOL,
        "bill_separately": BOOL,
        "itemisation": {"type": "string", "enum": list(ITEMISATIONS)},
        "reseller": nullable(RESELLER),
        "name": nullable(CONTACT_NAME),
        "address": nullable(CONTACT_ADDRESS),
        "locale": nullable(CONTACT_LOCALE),
        "email": nullable(CONTACT_EMAIL),
        "delivery": {"type": "string", "enum": list(DELIVERIES)},
    },
    additionalProperties=False,
    minProperties=1,
)

SUBSCRIPTION_IN = obj({"identity": IDENTITY}, ("identity",), additionalProperties=False)

BUCKET_TEMPLATE = obj(
    {
        "kind": {"type": "string", "enum": list(BUCKET_KINDS), "default": "units"},
        "unit": {"type": "string", "enum": list(BUCKET_UNITS)},
        "services": array(TEXT, maxItems=100),
        "priority": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        "valid_from": SECONDS,
        "valid_to": SECONDS,
        "valid_days": {"type": "integer", "minimum": 1, "maximum": 36_500},
    },
    additionalProperties=False,
    description="The bucket to create when the account has none with that id.",
)

TOPUP_IN = obj(
    {
        "amount": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX,
            "description": "micro-units for money, else units (octets, seconds, events)",
        },
        "bucket": {**ID, "default": "main"},
        "unit": UNIT,
        "reason": {"type": "string", "maxLength": MAX_REASON},
        "create": BUCKET_TEMPLATE,
    },
    ("amount",),
    additionalProperties=False,
)

ADJUST_IN = obj(
    {
        "amount": {
            "type": "integer",
            "minimum": -MAX,
            "maximum": MAX,
            "not": {"enum": [0]},
            "description": "non-zero: positive credits, negative debits",
        },
        "bucket": {**ID, "default": "main"},
        "unit": UNIT,
        "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON},
    },
    ("amount", "reason"),
    additionalProperties=False,
)

ACTIVATE_IN = obj(
    {"version": {"type": "string", "minLength": 1, "maxLength": 200}},
    ("version",),
    additionalProperties=False,
)

CATALOG_IN = {"type": "object", "description": "A catalog document (docs/catalog.md) as JSON."}

# --------------------------------------------------------------------------- responses

FIELD_PROBLEM = obj({"field": TEXT, "message": TEXT}, ("field", "message"))

ERROR = obj(
    {
        "error": obj(
            {"status": INT, "message": TEXT, "fields": array(FIELD_PROBLEM)},
            ("status", "message"),
        )
    },
    ("error",),
)

ACCOUNT = obj(
    {
        "id": TEXT,
        "kind": TEXT,
        "status": {"type": "string", "enum": [*STATUSES, CLOSED]},
        "currency": TEXT,
        "credit_limit": INT,
        "plan": TEXT,
        "bill_cycle_day": INT,
        "parent": nullable(TEXT),
        "reseller": nullable(TEXT),
        "created": nullable(INT),
        "tax_exempt": BOOL,
        "bill_separately": BOOL,
        "itemisation": {"type": "string", "enum": list(ITEMISATIONS)},
        "name": nullable(TEXT),
        "address": nullable(TEXT),
        "locale": nullable(TEXT),
        "email": nullable(TEXT),
        "delivery": {"type": "string", "enum": list(DELIVERIES)},
        "subscriptions": array(TEXT),
    },
    (
        "id",
        "kind",
        "status",
        "currency",
        "credit_limit",
        "plan",
        "bill_cycle_day",
        "tax_exempt",
        "bill_separately",
        "itemisation",
        "delivery",
    ),
)

ACCOUNT_CREATED = obj(
    {
        "outcome": {"type": "string", "enum": ["created", "updated", "unchanged"]},
        "account": ACCOUNT,
    },
    ("outcome", "account"),
)

ACCOUNT_CLOSED = obj(
    {"previous_status": TEXT, "released": array(TEXT), "account": ACCOUNT},
    ("previous_status", "released", "account"),
)

BUCKET = obj(
    {
        "id": TEXT,
        "kind": TEXT,
        "unit": nullable(TEXT),
        "amount": INT,
        "reserved": INT,
        "available": INT,
        "priority": INT,
        "valid_from": nullable(INT),
        "valid_to": nullable(INT),
        "services": array(TEXT),
    },
    ("id", "kind", "amount", "reserved", "available"),
)

BALANCE = obj(
    {
        "kind": TEXT,
        "unit": TEXT,
        "amount": INT,
        "reserved": INT,
        "available": INT,
        "credit_limit": INT,
        "buckets": array(TEXT),
    },
    ("kind", "unit", "amount", "reserved", "available", "buckets"),
)

BALANCES = obj(
    {"account": TEXT, "status": TEXT, "balances": array(BALANCE)},
    ("account", "balances"),
)

BALANCE_ACTION = obj(
    {
        "id": nullable(TEXT),
        "type": nullable(TEXT),
        "amount": nullable(INT),
        "bucket": nullable(TEXT),
        "unit": nullable(TEXT),
        "reason": nullable(TEXT),
        "key": nullable(TEXT),
        "time": nullable(INT),
        "resulting_amount": nullable(INT),
        "created_bucket": BOOL,
        "previous": {**TEXT, "description": "plan changes: the plan before"},
        "plan": {**TEXT, "description": "plan changes: the plan after"},
    },
    ("id", "type", "amount", "bucket", "time"),
)

SUBSCRIPTION = obj({"identity": TEXT, "account": TEXT, "added": BOOL}, ("identity", "account"))

SESSION = obj(
    {
        "session_id": nullable(TEXT),
        "account": nullable(TEXT),
        "peer": nullable(TEXT),
        "deadline": nullable(INT),
        "identities": array(TEXT),
        "services": array({"type": "object"}),
    },
    description="An open charging session with its reservations per rating group.",
)

USAGE = obj(
    {
        "id": nullable(TEXT),
        "stream_id": TEXT,
        "account": nullable(TEXT),
        "session": nullable(TEXT),
        "service": nullable(TEXT),
        "unit": nullable(TEXT),
        "cause": nullable(TEXT),
        "currency": nullable(TEXT),
    },
    ("stream_id",),
    description="A rated record (TMF635 usage); every field of docs/records.md.",
)

CATALOG_CHECK = obj(
    {"valid": BOOL, "version": nullable(TEXT), "problems": array(FIELD_PROBLEM)},
    ("valid", "problems"),
)

CATALOG_SAVED = obj({"version": TEXT, "saved": BOOL}, ("version", "saved"))

CATALOG_VERSION = obj(
    {"version": TEXT, "active": BOOL, "document": {"type": "object"}},
    ("version", "document"),
)

CATALOG_ACTIVATED = obj({"version": TEXT, "changed": BOOL}, ("version", "changed"))

BULK_RESULT = obj(
    {
        "lines": INT,
        "accounts": INT,
        "created": INT,
        "updated": INT,
        "unchanged": INT,
        "kept": INT,
        "failed": INT,
        "errors": array(obj({"line": INT, "problems": array(FIELD_PROBLEM)}, ("line", "problems"))),
        "errors_truncated": BOOL,
    },
    ("lines", "accounts", "failed", "errors"),
)

OPENAPI = {"type": "object", "description": "This document."}

# --------------------------------------------------------------------------- validator

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
}
_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
}


#: ``format`` values the validator checks with a function: why a value is invalid, or None.
FORMATS: dict[str, Callable[[str], str | None]] = {"identity": identity_problem}


@functools.cache
def _ecma(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled so that an unescaped ``$`` means the end of the string, as in
    ECMA-262, not "before a final newline" as in Python (no pattern here puts ``$`` in a
    character class)."""
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def validate(schema: Schema, value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every problem of ``value`` against ``schema`` as ``(field path, message)``.

    The root is named ``body``; nested fields ``create.unit``, ``buckets[0].amount``.
    """
    problems: list[tuple[str, str]] = []
    _check(schema, value, path, problems)
    return [(field or "body", message) for field, message in problems]


def _check(schema: Schema, value: Any, path: str, out: list[tuple[str, str]]) -> None:
    if value is None:
        if not schema.get("nullable"):
            out.append((path, "must not be null"))
        return
    kind = schema.get("type")
    if kind == "integer" and type(value) is not int:
        out.append((path, "must be an integer"))
        return
    if kind in _TYPES and (
        not isinstance(value, _TYPES[kind]) or (kind != "boolean" and isinstance(value, bool))
    ):
        out.append((path, f"must be {_NAMES[kind]}"))
        return
    if "enum" in schema and value not in schema["enum"]:
        out.append((path, "must be one of " + ", ".join(str(v) for v in schema["enum"])))
        return
    if "not" in schema and not validate(schema["not"], value):
        excluded = schema["not"].get("enum")
        if excluded == [0]:
            out.append((path, "must be a non-zero integer"))
        else:
            out.append((path, f"must not match {schema['not']}"))
        return
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            out.append((path, f"must be an integer from {low} to {high}"))
    elif kind == "string":
        _check_string(schema, value, path, out)
    elif kind == "array":
        _check_array(schema, value, path, out)
    elif kind == "object":
        _check_object(schema, value, path, out)


def _check_string(schema: Schema, value: str, path: str, out: list[tuple[str, str]]) -> None:
    low, high = schema.get("minLength"), schema.get("maxLength")
    if low is not None and len(value) < low:
        out.append(
            (path, "must not be empty" if low == 1 else f"must have at least {low} characters")
        )
    elif high is not None and len(value) > high:
        out.append((path, f"must have at most {high} characters"))
    elif (check := FORMATS.get(schema.get("format", ""))) is not None and (
        problem := check(value)
    ) is not None:
        out.append((path, problem))
    elif "pattern" in schema and not _ecma(schema["pattern"]).search(value):
        out.append((path, f"must match {schema['pattern']}"))


def _check_array(schema: Schema, value: list[Any], path: str, out: list[tuple[str, str]]) -> None:
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low is not None and len(value) < low:
        out.append((path, f"must have at least {low} items"))
    if high is not None and len(value) > high:
        out.append((path, f"must have at most {high} items"))
        return
    if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
        out.append((path, "must not repeat an item"))
    items = schema.get("items")
    if items is not None:
        for i, item in enumerate(value):
            _check(items, item, f"{path}[{i}]", out)


def _check_object(
    schema: Schema, value: dict[str, Any], path: str, out: list[tuple[str, str]]
) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            out.append((_join(path, name), "is required"))
    if len(value) < schema.get("minProperties", 0):
        out.append(
            (
                path,
                f"must have at least {schema['minProperties']} field(s): " + ", ".join(properties),
            )
        )
    for name, item in value.items():
        if name in properties:
            _check(properties[name], item, _join(path, name), out)
        elif schema.get("additionalProperties") is False:
            out.append((_join(path, name), "unknown field"))
