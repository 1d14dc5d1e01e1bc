"""Accounts, identities and balance buckets: the model, its stored forms and validation.

:class:`Account` and :class:`Bucket` are what the account store
(:class:`quota_engine.store.accounts.AccountStore`) keeps in Redis, with the forms they
are stored in (:meth:`Account.to_hash`, :meth:`Bucket.pack`); :func:`identity` is the
canonical form of a subscriber identity (``msisdn:491700000001``), the one the Gy
translation builds and the identity index is keyed by. The validation functions list
every problem as ``(field, message)``; errors are :mod:`quota_engine.accounts.errors`
(re-exported here).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import msgpack

from quota_engine.accounts.errors import (
    AccountError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from quota_engine.catalog import Catalog
from quota_engine.store.limits import MAX_AMOUNT
from quota_engine.store.text import text

__all__ = [
    "ACCOUNT_KINDS",
    "BUCKET_KINDS",
    "BUCKET_UNITS",
    "CONTACT_FIELDS",
    "DELIVERIES",
    "IDENTITY_TYPES",
    "ITEMISATIONS",
    "MAIN_BUCKET",
    "OPTIONAL_ACCOUNT_FIELDS",
    "STATUSES",
    "Account",
    "AccountError",
    "Bucket",
    "ConflictError",
    "NotFoundError",
    "ValidationError",
    "account_catalog_problems",
    "bucket_catalog_problems",
    "contact_problems",
    "email_problem",
    "id_problem",
    "identity",
    "identity_problem",
    "is_int",
    "locale_problem",
    "one_line_problem",
    "parse_identity",
    "raise_problems",
    "require_id",
    "validate_account",
    "validate_bucket",
]

ACCOUNT_KINDS = ("prepaid", "postpaid")
STATUSES = ("active", "suspended", "barred")
BUCKET_KINDS = ("money", "units")
BUCKET_UNITS = ("octets", "seconds", "events")
MAIN_BUCKET = "main"
MAX_PRIORITY = 2**31 - 1
IDENTITY_TYPES = ("msisdn", "imsi", "sip", "nai")
ITEMISATIONS = ("detailed", "summary")
"""What an account's invoice documents show: every rated record, or the lines only
(the same tuple as ``ocs.billing.accounts.ITEMISATIONS``, which may not import this)."""
DELIVERIES = ("email", "paper")
"""How an account's final invoices reach the customer: e-mailed (the PDF attached) or
printed and posted (a print batch for the print house)."""
CONTACT_FIELDS = ("name", "address", "locale", "email")
"""The customer's contact on the invoice documents: optional text, None when unset."""
OPTIONAL_ACCOUNT_FIELDS = (
    "parent",
    "reseller",
    "tax_exempt",
    "bill_separately",
    "itemisation",
    *CONTACT_FIELDS,
    "delivery",
)
"""Account hash fields written only when not the default: an update back to the default
deletes them, and a hash written before they existed reads as the defaults."""
MAX_NAME = 200
MAX_ADDRESS_LINES = 6
MAX_ADDRESS_LINE = 100
MAX_EMAIL = 254  # RFC 5321's limit of a forward path, less the angle brackets
_TRUE, _FALSE = "1", "0"

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ID_TEXT = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_CURRENCY = re.compile(r"[A-Z]{3}")
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_IDENTITY_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "msisdn": (re.compile(r"[1-9][0-9]{6,14}"), "must be an E.164 number: 7 to 15 digits, no '+'"),
    "imsi": (re.compile(r"[0-9]{15}"), "must be an IMSI: 15 digits"),
    "sip": (
        re.compile(rf"sips?:(?:[^\s@;]+@)?{_HOST}(?::[0-9]{{1,5}})?"),
        'must be a SIP URI such as "sip:alice@example.net" (identity "sip:sip:alice@example.net")',
    ),
    "nai": (re.compile(rf"[^\s@]+@{_HOST}"), "must be a NAI user@realm"),
}
_MAX_IDENTITY = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EMAIL = re.compile(
    r"[^\s@\"(),:;<>\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


# --------------------------------------------------------------------------- values


def is_int(value: Any, low: int, high: int) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` (not a bool) from ``low`` to ``high``."""
    return type(value) is int and low <= value <= high


def identity(kind: str, value: str) -> str:
    """Canonical identity string, e.g. ``msisdn:491700000001`` (not validated: see
    :func:`identity_problem`)."""
    if kind not in IDENTITY_TYPES:
        raise ValueError(f"identity type must be one of {', '.join(IDENTITY_TYPES)}, got {kind!r}")
    return f"{kind}:{value}"


def identity_problem(identity: Any) -> str | None:
    """Why ``identity`` (``kind:value``, see :func:`identity`) is invalid, or None."""
    if not isinstance(identity, str):
        return 'must be a string "type:value" such as "msisdn:491700000001"'
    kind, sep, value = identity.partition(":")
    if not sep or kind not in _IDENTITY_RULES:
        return f'must be "type:value" with type one of {", ".join(IDENTITY_TYPES)}'
    pattern, message = _IDENTITY_RULES[kind]
    if len(identity) > _MAX_IDENTITY or not pattern.fullmatch(value):
        return f"{kind} {message}, got {value!r}"
    return None


def parse_identity(identity: Any, field: str = "identity") -> str:
    """The canonical identity string; :class:`AccountError` naming ``field`` when invalid."""
    problem = identity_problem(identity)
    if problem is not None:
        raise AccountError(field, problem)
    return str(identity)


def id_problem(value: Any) -> str | None:
    """Why ``value`` is not an account or bucket id, or None."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        return f"must be {_ID_TEXT}"
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class Account:
    id: str
    kind: str
    status: str = "active"
    currency: str
    credit_limit: int = 0  # micro-units; postpaid only
    plan: str
    bill_cycle_day: int = 1
    parent: str | None = None
    created: int | None = None  # Unix seconds; set by the store on creation
    tax_exempt: bool = False  # invoices carry no tax
    bill_separately: bool = False  # a child invoiced on its own, not on its parent's
    itemisation: str = "detailed"  # one of ITEMISATIONS
    # the customer's contact, for the invoice documents (CONTACT_FIELDS)
    name: str | None = None
    address: str | None = None  # lines separated by "\n"
    locale: str | None = None  # language and territory, de_DE; None: the documents' default
    email: str | None = None
    delivery: str = "email"  # one of DELIVERIES
    # the reseller partner (catalog ``[[resellers]]`` id) whose subscriber the account is:
    # its invoices are issued under the reseller's billing entity; None: the operator's
    reseller: str | None = None

    def to_hash(self) -> dict[str, str]:
        """The stored fields (``parent`` only when set, ``created`` only when known, the
        billing preferences only when not the default: :data:`OPTIONAL_ACCOUNT_FIELDS`)."""
        fields = {
            "kind": self.kind,
            "status": self.status,
            "currency": self.currency,
            "credit_limit": str(self.credit_limit),
            "plan": self.plan,
            "bill_cycle_day": str(self.bill_cycle_day),
        }
        if self.parent is not None:
            fields["parent"] = self.parent
        if self.reseller is not None:
            fields["reseller"] = self.reseller
        if self.created is not None:
            fields["created"] = str(self.created)
        if self.tax_exempt:
            fields["tax_exempt"] = _TRUE
        if self.bill_separately:
            fields["bill_separately"] = _TRUE
        if self.itemisation != "detailed":
            fields["itemisation"] = self.itemisation
        for name in CONTACT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        if self.delivery != "email":
            fields["delivery"] = self.delivery
        return fields

    @classmethod
    def from_hash(cls, account_id: str, stored: Mapping[Any, Any]) -> Account:
        f = {text(k): text(v) for k, v in stored.items()}
        return cls(
            id=account_id,
            kind=f.get("kind", ""),
            status=f.get("status", ""),
            currency=f.get("currency", ""),
            credit_limit=int(f.get("credit_limit", "0")),
            plan=f.get("plan", ""),
            bill_cycle_day=int(f.get("bill_cycle_day", "1")),
            parent=f.get("parent") or None,
            created=int(f["created"]) if f.get("created") else None,
            tax_exempt=f.get("tax_exempt", _FALSE) == _TRUE,
            bill_separately=f.get("bill_separately", _FALSE) == _TRUE,
            itemisation=f.get("itemisation") or "detailed",
            name=f.get("name") or None,
            address=f.get("address") or None,
            locale=f.get("locale") or None,
            email=f.get("email") or None,
            delivery=f.get("delivery") or "email",
            reseller=f.get("reseller") or None,
        )

    def differences(self, other: Account) -> list[str]:
        """Names of the fields that differ from ``other`` (``created`` ignored)."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.name != "created" and getattr(self, f.name) != getattr(other, f.name)
        ]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class Bucket:
    """A balance: money (micro-units of the account currency) or units of one type.

    ``amount`` includes ``reserved`` (units held by live sessions); ``available`` is what
    is left to grant. ``services`` lists service ids: for money, empty means every
    service; a units bucket applies only to the services listed. Lower ``priority`` is
    consumed first. ``valid_from``/``valid_to`` are Unix seconds (None: unbounded).
    """

    id: str
    kind: str
    unit: str | None = None
    amount: int
    reserved: int = 0
    priority: int = 0
    valid_from: int | None = None
    valid_to: int | None = None
    services: tuple[str, ...] = ()

    @property
    def available(self) -> int:
        return self.amount - self.reserved

    def to_map(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "unit": self.unit,
            "amount": self.amount,
            "reserved": self.reserved,
            "priority": self.priority,
            "valid_from": self.valid_from,
            "valid_to": self.valid_to,
            "services": list(self.services),
        }

    def pack(self) -> bytes:
        packed: bytes = msgpack.packb(self.to_map())
        return packed

    @classmethod
    def unpack(cls, bucket_id: str, data: bytes) -> Bucket:
        m = msgpack.unpackb(data, raw=False)
        return cls(
            id=m.get("id") or bucket_id,
            kind=m.get("kind") or "money",
            unit=m.get("unit"),
            amount=int(m.get("amount") or 0),
            reserved=int(m.get("reserved") or 0),
            priority=int(m.get("priority") or 0),
            valid_from=m.get("valid_from"),
            valid_to=m.get("valid_to"),
            services=tuple(m.get("services") or ()),
        )

    def definition(self) -> dict[str, Any]:
        """Everything provisioning sets, i.e. all but ``reserved``."""
        m = self.to_map()
        del m["reserved"]
        return m

    def to_dict(self) -> dict[str, Any]:
        return {**self.to_map(), "available": self.available}


# --------------------------------------------------------------------------- validation


def validate_account(account: Account) -> list[tuple[str, str]]:
    """Every problem of ``account`` on its own, as ``(field, message)``."""
    problems: list[tuple[str, str]] = []

    def check(ok: bool, field: str, message: str) -> None:
        if not ok:
            problems.append((field, message))

    if (problem := id_problem(account.id)) is not None:
        problems.append(("id", problem))
    check(account.kind in ACCOUNT_KINDS, "kind", "must be one of " + ", ".join(ACCOUNT_KINDS))
    check(account.status in STATUSES, "status", "must be one of " + ", ".join(STATUSES))
    check(
        isinstance(account.currency, str) and bool(_CURRENCY.fullmatch(account.currency)),
        "currency",
        "must be an ISO 4217 code (three capital letters)",
    )
    if not is_int(account.credit_limit, 0, MAX_AMOUNT):
        problems.append(
            ("credit_limit", f"must be an integer from 0 to {MAX_AMOUNT} (micro-units)")
        )
    elif account.kind == "prepaid" and account.credit_limit != 0:
        problems.append(("credit_limit", "must be 0 for a prepaid account"))
    check(isinstance(account.plan, str) and bool(account.plan.strip()), "plan", "is required")
    check(
        is_int(account.bill_cycle_day, 1, 28), "bill_cycle_day", "must be an integer from 1 to 28"
    )
    if account.parent is not None:
        if (problem := id_problem(account.parent)) is not None:
            problems.append(("parent", problem))
        elif account.parent == account.id:
            problems.append(("parent", "an account cannot be its own parent"))
    if account.reseller is not None and (problem := id_problem(account.reseller)) is not None:
        problems.append(("reseller", problem.replace("must be", "must be a reseller id:", 1)))
    if account.created is not None:
        check(is_int(account.created, 0, MAX_AMOUNT), "created", "must be Unix seconds")
    for name in ("tax_exempt", "bill_separately"):
        check(type(getattr(account, name)) is bool, name, "must be true or false")
    check(
        isinstance(account.itemisation, str) and account.itemisation in ITEMISATIONS,
        "itemisation",
        "must be one of " + ", ".join(ITEMISATIONS),
    )
    problems.extend(contact_problems(account))
    return problems


def contact_problems(account: Account) -> list[tuple[str, str]]:
    """Problems of the customer contact fields (each optional: None is unset)."""
    problems: list[tuple[str, str]] = []
    given: dict[str, str] = {}
    for field in CONTACT_FIELDS:
        value = getattr(account, field)
        if isinstance(value, str) and value.strip():
            given[field] = value
        elif value is not None:
            problems.append((field, "must be a non-empty string, or null (unset)"))
    name = given.get("name")
    if name is not None and (problem := one_line_problem(name)) is not None:
        problems.append(("name", problem))
    address = given.get("address")
    if address is not None:
        lines = address.split("\n")
        if len(lines) > MAX_ADDRESS_LINES or any(
            len(line) > MAX_ADDRESS_LINE or _CONTROL.search(line) for line in lines
        ):
            problems.append(
                (
                    "address",
                    f"must be at most {MAX_ADDRESS_LINES} lines separated by \\n, each of at "
                    f"most {MAX_ADDRESS_LINE} characters without control characters",
                )
            )
    locale = given.get("locale")
    if locale is not None and (problem := locale_problem(locale)) is not None:
        problems.append(("locale", problem))
    email = given.get("email")
    if email is not None and (problem := email_problem(email)) is not None:
        problems.append(("email", problem))
    if not isinstance(account.delivery, str) or account.delivery not in DELIVERIES:
        problems.append(("delivery", "must be one of " + ", ".join(DELIVERIES)))
    return problems


_LOCALE = re.compile(r"[a-z]{2,3}(?:_[A-Z][a-z]{3})?_(?:[A-Z]{2}|[0-9]{3})")


def one_line_problem(value: str) -> str | None:
    """Why ``value`` is not one line of text of at most :data:`MAX_NAME` characters (no
    line break or other control character), or None: a name on a document."""
    if len(value) > MAX_NAME or _CONTROL.search(value):
        return f"must be one line of at most {MAX_NAME} characters"
    return None


def email_problem(value: str) -> str | None:
    """Why ``value`` is not an e-mail address (``user@domain.tld``, at most
    :data:`MAX_EMAIL` characters), or None."""
    if len(value) > MAX_EMAIL or not _EMAIL.fullmatch(value):
        return "must be an e-mail address such as alice@example.net"
    return None


def locale_problem(value: str) -> str | None:
    """Why ``value`` is not a locale the documents can format for, or None: a language
    and a territory as Babel (CLDR) knows them, written ``de_DE`` (``sr_Latn_RS`` with
    a script)."""
    # imported here: Babel's locale data is needed only when a locale is given
    from babel import Locale, UnknownLocaleError

    message = "must be a locale such as de_DE or en_GB (language_TERRITORY, known to CLDR)"
    if not _LOCALE.fullmatch(value):
        return message
    try:
        Locale.parse(value)
    except (UnknownLocaleError, ValueError):
        return f"{message}: {value!r} is unknown"
    return None


def validate_bucket(bucket: Bucket) -> list[tuple[str, str]]:
    """Every problem of ``bucket`` on its own (``reserved`` is not checked: never written)."""
    problems: list[tuple[str, str]] = []
    if (problem := id_problem(bucket.id)) is not None:
        problems.append(("id", problem))
    if bucket.kind not in BUCKET_KINDS:
        problems.append(("kind", "must be one of " + ", ".join(BUCKET_KINDS)))
    elif bucket.kind == "money" and bucket.unit is not None:
        problems.append(("unit", "a money bucket has no unit (its unit is the account currency)"))
    elif bucket.kind == "units" and bucket.unit not in BUCKET_UNITS:
        problems.append(("unit", "must be one of " + ", ".join(BUCKET_UNITS)))
    if bucket.id == MAIN_BUCKET and bucket.kind != "money":
        problems.append(("kind", f'the bucket "{MAIN_BUCKET}" is the money bucket'))
    if not is_int(bucket.amount, 0, MAX_AMOUNT):
        problems.append(("amount", f"must be an integer from 0 to {MAX_AMOUNT} (below 2**53)"))
    if not is_int(bucket.priority, 0, MAX_PRIORITY):
        problems.append(("priority", f"must be an integer from 0 to {MAX_PRIORITY}"))
    for name in ("valid_from", "valid_to"):
        value = getattr(bucket, name)
        if value is not None and not is_int(value, 0, MAX_AMOUNT):
            problems.append((name, "must be Unix seconds"))
    if (
        is_int(bucket.valid_from, 0, MAX_AMOUNT)
        and is_int(bucket.valid_to, 0, MAX_AMOUNT)
        and bucket.valid_to <= bucket.valid_from
    ):
        problems.append(("valid_to", "must be after valid_from"))
    services = bucket.services
    if not isinstance(services, tuple | list) or not all(
        isinstance(s, str) and s.strip() for s in services
    ):
        problems.append(("services", "must be a list of service ids"))
    elif len(set(services)) != len(services):
        problems.append(("services", "lists a service twice"))
    elif bucket.kind == "units" and not services:
        problems.append(("services", "a units bucket must name the services it applies to"))
    return problems


def account_catalog_problems(account: Account, catalog: Catalog) -> list[tuple[str, str]]:
    """Problems of ``account`` against ``catalog``: plan, plan type, currency, reseller."""
    problems: list[tuple[str, str]] = []
    plan = catalog.plan(account.plan)
    if plan is None:
        known = ", ".join(p.id for p in catalog.plans) or "none"
        problems.append(
            ("plan", f"unknown plan {account.plan!r} in catalog {catalog.version} (plans: {known})")
        )
    elif plan.type is not None and plan.type != account.kind:
        problems.append(("plan", f"plan {plan.id!r} is for {plan.type} accounts"))
    if account.currency != catalog.currency:
        problems.append(
            (
                "currency",
                f"must be the catalog currency {catalog.currency} (catalog {catalog.version})",
            )
        )
    if account.reseller is not None and catalog.reseller(account.reseller) is None:
        known = ", ".join(r.id for r in catalog.resellers) or "none"
        problems.append(
            (
                "reseller",
                f"unknown reseller {account.reseller!r} in catalog {catalog.version} "
                f"(resellers: {known})",
            )
        )
    return problems


def bucket_catalog_problems(bucket: Bucket, catalog: Catalog) -> list[tuple[str, str]]:
    """Problems of ``bucket`` against ``catalog``: known services of the bucket's unit."""
    problems: list[tuple[str, str]] = []
    if not isinstance(bucket.services, tuple | list):
        return problems
    for i, service_id in enumerate(bucket.services):
        service = catalog.service(service_id) if isinstance(service_id, str) else None
        if service is None:
            problems.append((f"services[{i}]", f"unknown service {service_id!r}"))
        elif bucket.kind == "units" and service.unit != bucket.unit:
            problems.append(
                (f"services[{i}]", f"service {service_id!r} is counted in {service.unit}")
            )
    return problems


def require_id(value: Any, field: str = "account") -> None:
    """:class:`AccountError` naming ``field`` when ``value`` is not a valid id."""
    if (problem := id_problem(value)) is not None:
        raise AccountError(field, problem)


def raise_problems(problems: Iterable[tuple[str, str]]) -> None:
    """:class:`ValidationError` listing ``problems``, when there are any."""
    problems = list(problems)
    if problems:
        raise ValidationError(problems)
