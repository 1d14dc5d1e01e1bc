"""Errors to HTTP: the one place that maps an exception to a status and a JSON body.

Every error response is ``{"error": {"status": S, "message": "...", "fields": [...]}}``;
``fields`` (present when the problem is in the request) names each bad field:
``{"field": "amount", "message": "must be an integer from 1 to ..."}``.

=====================================================  ======
exception                                              status
=====================================================  ======
:class:`ApiError`                                      its own
aiohttp ``HTTPException`` (404, 405, 413, ...)         its own
``ValidationError``, ``AccountError``, ``CatalogError``,
``ProvisioningError`` (values refused by meaning)      422
``NotFoundError`` (the account of the URL)             404
``ConflictError``, ``KeyReusedError``,
``CatalogStoreError`` (a version saved differently)    409
``ActionRefusedError`` (closed account, ...)           422
billing lifecycle errors (``ocs.billing.lifecycle``):
``DocumentNotFound`` / ``InvalidState`` /
``InvalidCorrection``                                  404 / 409 / 422 (their ``status``)
``BillingError`` (an off-cycle bill refused)           422
payment errors (``ocs.billing.payments``):
``UnknownAccount``, ``PaymentNotFound`` /
``IdempotencyConflict`` / ``PaymentRefused``           404 / 409 / 422 (their ``status``)
Redis unreachable, loading, read-only, out of memory,
busy or resharding (:func:`store_unavailable`)          503
the billing database not migrated, migrated by a
newer ocs, unreachable or locked (:func:`billing_unavailable`)  503
a Redis command error (the command was wrong: a bug)   500, logged with its trace
anything else                                          500, logged with its trace
=====================================================  ======

**400 or 422.** 400 means the request breaks the OpenAPI document (a body off its
schema, a malformed path, query or header parameter): the handlers check those first
(:mod:`ocs.api.schema`, :mod:`ocs.api.common`), so a 400 is always predictable from the
document. What the document allows but the stores refuse by meaning (an unknown plan,
parent or service, a currency other than the catalog's, ``valid_to`` before
``valid_from``, an invalid catalog) or by state (a closed account) is 422, so that
"schema-valid" and "not 400" are the same thing (the schemathesis test checks it).

A response never carries a stack trace or an exception's text unless the exception is
one of ours (whose messages are written for the client).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from ocs.billing.database import BillingDatabaseError, NotMigrated, UnknownRevision
from ocs.billing.lifecycle import DocumentNotFound, InvalidCorrection, LifecycleError
from ocs.billing.payments.allocation import PaymentError
from ocs.billing.usage import BillingError
from quota_engine.accounts.balance_actions import ActionRefusedError, KeyReusedError
from quota_engine.accounts.model import AccountError, ConflictError, NotFoundError, ValidationError
from quota_engine.accounts.provisioning import ProvisioningError
from quota_engine.catalog import CatalogError
from quota_engine.store.catalogs import CatalogStoreError

__all__ = [
    "ApiError",
    "Problem",
    "billing_unavailable",
    "describe",
    "error_body",
    "split_problem",
    "store_unavailable",
]

Problem = tuple[str, str]
REFUSED = "request refused"


class ApiError(Exception):
    """An error raised by a handler: ``status``, ``message`` and the bad ``fields``."""

    def __init__(
        self,
        status: int,
        message: str,
        fields: Iterable[Problem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = list(fields)
        self.headers = headers or {}

    @classmethod
    def invalid(cls, problems: Iterable[Problem], message: str = "invalid request") -> ApiError:
        """400: the request breaks the OpenAPI document (see the module doc)."""
        return cls(400, message, problems)

    @classmethod
    def refused(cls, problems: Iterable[Problem], message: str = REFUSED) -> ApiError:
        """422: the document allows the request, its meaning is refused."""
        return cls(422, message, problems)


def split_problem(text: str, prefix: str = "") -> Problem:
    """``"accounts[0].plan: unknown plan"`` -> ``("plan", "unknown plan")`` (``prefix``
    removed from the path); a text without ``": "`` is named after the body."""
    path, sep, message = text.partition(": ")
    if not sep:
        return "body", text
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :].lstrip(".")
    return path or "body", message


def error_body(status: int, message: str, fields: Iterable[Problem] = ()) -> dict[str, Any]:
    error: dict[str, Any] = {"status": status, "message": message}
    fields = list(fields)
    if fields:
        error["fields"] = [{"field": f, "message": m} for f, m in fields]
    return {"error": error}


#: Redis error replies (their first word) that say the server cannot serve now, whatever
#: the command: redis-py raises a bare ``ResponseError`` for these.
_UNAVAILABLE_REPLIES = ("BUSY", "MISCONF", "NOREPLICAS", "MASTERDOWN", "CLUSTERDOWN", "LOADING")


def store_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says Redis cannot serve right now (retrying later may work).

    A Redis *command* error (``ResponseError``: a malformed stream id, a wrong type, a
    syntax error) is not: the same command would fail again, so it is our bug or an
    input we failed to validate, and is answered 500, not "unavailable".
    """
    if isinstance(
        exc,
        RedisConnectionError  # includes BusyLoadingError, AuthenticationError
        | RedisTimeoutError
        | BusyLoadingError
        | ReadOnlyError
        | OutOfMemoryError
        | TryAgainError
        | ClusterDownError,
    ):
        return True
    if isinstance(exc, ResponseError):
        return str(exc).split(" ", 1)[0] in _UNAVAILABLE_REPLIES
    if isinstance(exc, RedisError):
        return False  # DataError, InvalidResponse, ...: our side, not the store's health
    return isinstance(exc, ConnectionError)


def billing_unavailable(exc: BaseException) -> str | None:
    """What to tell the client when ``exc`` says the billing database cannot serve (503),
    else None. The database's URL and the driver's text stay in the log
    (``billing_database_unavailable``), not in the answer."""
    if isinstance(exc, NotMigrated):
        return "the billing database is not at this version's schema: run `ocs billing migrate`"
    if isinstance(exc, UnknownRevision):
        return "the billing database was migrated by a newer version of ocs"
    if isinstance(
        exc, BillingDatabaseError | OperationalError | InterfaceError | DisconnectionError
    ):
        return "the billing database is unavailable; try again"
    return None


def _lifecycle_fields(exc: LifecycleError) -> list[Problem]:
    """The field a lifecycle error is about: its own ``field`` (a credit note's
    ``lines[1].amount``, ``reason``), else the document (404) or its state (409)."""
    field = exc.field
    if field is None:
        if isinstance(exc, DocumentNotFound):
            field = "id"
        elif isinstance(exc, InvalidCorrection):
            field = "lines"
        else:
            field = "state"
    return [(field, str(exc))]


def describe(exc: BaseException) -> tuple[int, str, list[Problem], dict[str, str]]:
    """``(status, message, fields, headers)`` for any exception (see the module table)."""
    if isinstance(exc, ApiError):
        return exc.status, exc.message, exc.fields, exc.headers
    if isinstance(exc, web.HTTPException):
        default = f"{exc.status}: {exc.reason}"  # aiohttp's text when none was given
        message = exc.reason if not exc.text or exc.text == default else exc.text
        headers = {
            k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")
        }
        return exc.status, message, [], headers
    if isinstance(exc, ValidationError):
        return 422, REFUSED, exc.problems, {}
    if isinstance(exc, NotFoundError):
        return 404, exc.message, [(exc.field, exc.message)], {}
    if isinstance(exc, ConflictError | KeyReusedError):
        return 409, exc.message, [(exc.field, exc.message)], {}
    if isinstance(exc, ActionRefusedError):
        return 422, exc.message, [(exc.field, exc.message)], {}
    if isinstance(exc, AccountError):
        return 422, REFUSED, [(exc.field, exc.message)], {}
    if isinstance(exc, CatalogError):
        return 422, "invalid catalog", [split_problem(p) for p in exc.problems], {}
    if isinstance(exc, ProvisioningError):
        return 422, REFUSED, [split_problem(p) for p in exc.problems], {}
    if isinstance(exc, CatalogStoreError):
        return 409, str(exc), [], {}
    if isinstance(exc, LifecycleError):
        return exc.status, str(exc), _lifecycle_fields(exc), {}
    if isinstance(exc, PaymentError):
        return exc.status, str(exc), [(exc.field or "body", str(exc))], {}
    if isinstance(exc, BillingError):
        return 422, str(exc), [("billingAccount.id", str(exc))], {}
    if (unavailable := billing_unavailable(exc)) is not None:
        return 503, unavailable, [], {"Retry-After": "1"}
    if store_unavailable(exc):
        return 503, "the balance store is unavailable; try again", [], {"Retry-After": "1"}
    return 500, "internal server error", [], {}
