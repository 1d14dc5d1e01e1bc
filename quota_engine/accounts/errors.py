"""The errors of the account side, and the one table of what a script's status means.

Every error is an :class:`AccountError` naming the field at fault; the HTTP API maps
the classes to status codes (ocs/api/errors.py): :class:`ValidationError` 400,
:class:`NotFoundError` 404, :class:`ConflictError` and :class:`KeyReusedError` 409,
:class:`ActionRefusedError` 422.

The account scripts (quota_engine/store/lua/: put_bucket, credit, set_status,
balance_action) answer a status string; :data:`REFUSALS` says, per script, which of
those statuses is a refusal and which error (class, field, message) it becomes, and
:func:`refusal` builds that error. A status a script can answer that is not in its
table is a success for its caller to handle. Every status each script can answer is
listed in :data:`quota_engine.store.contract.ACCOUNT_SCRIPT_STATUSES`;
tests/quota_engine/store/test_contract.py checks that this table names only those.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "REFUSALS",
    "AccountError",
    "ActionRefusedError",
    "ConflictError",
    "KeyReusedError",
    "NotFoundError",
    "Refusal",
    "ValidationError",
    "refusal",
]


class AccountError(ValueError):
    """A request the store refuses; ``field`` names the value at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ValidationError(AccountError):
    """A document with problems; ``problems`` lists every one as ``(field, message)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__(*self.problems[0])
        self.args = ("; ".join(f"{f}: {m}" for f, m in self.problems),)

    def __str__(self) -> str:
        return str(self.args[0])


class NotFoundError(AccountError):
    """The account or bucket does not exist."""


class ConflictError(AccountError):
    """The request contradicts what is stored (identity on another account, ...)."""


class KeyReusedError(AccountError):
    """The idempotency key was used before for a different request (HTTP 409)."""


class ActionRefusedError(AccountError):
    """A valid request that the account's current state forbids (HTTP 422)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """What one script status becomes: ``error(field, message.format(**context))``.

    The message may name ``account``, ``bucket``, ``amount`` (the caller's),
    ``detail`` (the script's second return value), ``limit`` (the largest amount),
    ``taken`` (the amount an adjustment would take away) and ``hint``.
    """

    error: type[AccountError]
    field: str
    message: str


_NO_ACCOUNT = Refusal(NotFoundError, "account", "no account {account!r}")
_OVERFLOW = Refusal(
    ActionRefusedError, "amount", "bucket {bucket!r} would exceed {limit} (it holds {detail})"
)

REFUSALS: dict[str, dict[str, Refusal]] = {
    "put_bucket.lua": {
        "no_account": _NO_ACCOUNT,
        "unit_change": Refusal(
            ConflictError,
            "kind",
            "bucket {bucket!r} has {detail} units reserved; kind and unit stay",
        ),
        "below_reserved": Refusal(
            ConflictError, "amount", "bucket {bucket!r} has {detail} reserved, more than {amount}"
        ),
    },
    "credit.lua": {
        "no_bucket": Refusal(
            NotFoundError, "bucket", "account {account!r} has no bucket {bucket!r}"
        ),
        "overflow": _OVERFLOW,
    },
    "set_status.lua": {"no_account": _NO_ACCOUNT},
    "balance_action.lua": {
        "no_account": _NO_ACCOUNT,
        "closed": Refusal(ActionRefusedError, "account", "account {account!r} is closed"),
        # a top-up or adjustment of a missing bucket: the account exists (404 is for
        # the account of the URL), the request cannot be done on it as it is
        "no_bucket": Refusal(
            ActionRefusedError, "bucket", "account {account!r} has no bucket {bucket!r}{hint}"
        ),
        "unit_mismatch": Refusal(ActionRefusedError, "unit", "bucket {bucket!r} is {detail}"),
        "overflow": _OVERFLOW,
        "below": Refusal(
            ActionRefusedError,
            "amount",
            "cannot take {taken} from bucket {bucket!r}: at most {detail} is free "
            "(units reserved by live sessions stay)",
        ),
    },
}
"""Script name (``LuaScript.name``) -> status -> the error it becomes."""


def refusal(script: str, status: str, **context: object) -> AccountError:
    """The error for ``status`` answered by ``script`` (see :data:`REFUSALS`); a status
    the table does not know gives an :class:`AccountError` that names it."""
    found = REFUSALS.get(script, {}).get(status)
    if found is None:
        return AccountError("account", f"{script}: unexpected script status {status!r}")
    return found.error(found.field, found.message.format(**context))
