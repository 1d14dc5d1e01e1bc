"""The one mapping from charging outcomes to Diameter Result-Codes (RFC 8506, TS 32.299).

:data:`RESULT_CODES` is the table: every :class:`~quota_engine.model.Outcome` has
exactly one Result-Code. :func:`answer_codes` applies it to a whole
:class:`~quota_engine.model.ChargingResult`: the command-level Result-Code and one
Result-Code per service, following these rules (docs/diameter.md, "Result-Codes"):

* a request-level outcome other than OK (unknown subscriber, barred account, stale
  request number, unknown session, ...) is the command-level code;
* a session request with Multiple-Services-Credit-Control succeeds as a whole
  (2001) even when some services fail: each service's code goes into its own MSCC
  (e.g. 4012 for a rating group whose quota is exhausted, 5031 for one without a
  tariff), as RFC 8506 §5.1.2 and TS 32.299 §6.3.5 describe;
* when every service is zero-rated the command-level code is 4011
  (DIAMETER_CREDIT_CONTROL_NOT_APPLICABLE): credit control does not apply;
* a single-service request (no MSCC) and a one-time event are all-or-nothing: the
  first failing service's code is the command-level code (4012 for an event that
  cannot be afforded).

Nothing else in the code base turns an Outcome into a number.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.dictionary import constants as c
from quota_engine.model import ChargingResult, Outcome, RequestType

SUCCESS = c.E_RESULT_CODE_DIAMETER_SUCCESS
UNABLE_TO_COMPLY = c.E_RESULT_CODE_DIAMETER_UNABLE_TO_COMPLY
RATING_FAILED = c.E_RESULT_CODE_DIAMETER_RATING_FAILED
CREDIT_CONTROL_NOT_APPLICABLE = c.E_RESULT_CODE_DIAMETER_CREDIT_CONTROL_NOT_APPLICABLE
CREDIT_LIMIT_REACHED = c.E_RESULT_CODE_DIAMETER_CREDIT_LIMIT_REACHED

RESULT_CODES: dict[Outcome, int] = {
    Outcome.OK: SUCCESS,  # 2001
    Outcome.UNKNOWN_SUBSCRIBER: c.E_RESULT_CODE_DIAMETER_USER_UNKNOWN,  # 5030
    Outcome.SERVICE_DENIED: c.E_RESULT_CODE_DIAMETER_END_USER_SERVICE_DENIED,  # 4010
    Outcome.NOT_APPLICABLE: CREDIT_CONTROL_NOT_APPLICABLE,  # 4011
    Outcome.CREDIT_LIMIT_REACHED: CREDIT_LIMIT_REACHED,  # 4012
    Outcome.NO_TARIFF: RATING_FAILED,  # 5031
    # RFC 8506 defines no code for a CC-Request-Number older than the session's last
    # one; DIAMETER_UNABLE_TO_COMPLY with an Error-Message (docs/diameter.md).
    Outcome.OUT_OF_ORDER: UNABLE_TO_COMPLY,  # 5012
    # RFC 8506 §7 server state machine: CCR-U/CCR-T in Idle -> UNKNOWN_SESSION_ID.
    Outcome.UNKNOWN_SESSION: c.E_RESULT_CODE_DIAMETER_UNKNOWN_SESSION_ID,  # 5002
    # Check-balance without enough credit is a successful answer whose
    # Check-Balance-Result says NO_CREDIT (RFC 8506 §6.3).
    Outcome.INSUFFICIENT_BALANCE: SUCCESS,
}

# Outcomes of one service that do not make an all-or-nothing request fail.
_NOT_FAILURES = frozenset({Outcome.OK, Outcome.NOT_APPLICABLE, Outcome.INSUFFICIENT_BALANCE})


def result_code(outcome: Outcome) -> int:
    """The Result-Code of one outcome."""
    return RESULT_CODES[outcome]


def answer_codes(
    result: ChargingResult, request_type: RequestType, multiple_services: bool
) -> tuple[int, list[int]]:
    """(command-level Result-Code, [Result-Code of each of ``result.services``])."""
    per_service = [RESULT_CODES[grant.outcome] for grant in result.services]
    return _command_code(result, request_type, multiple_services), per_service


def _command_code(result: ChargingResult, request_type: RequestType, multiple: bool) -> int:
    if result.outcome is not Outcome.OK:
        return RESULT_CODES[result.outcome]
    outcomes: Sequence[Outcome] = [grant.outcome for grant in result.services]
    if not outcomes:
        return SUCCESS
    if all(outcome is Outcome.NOT_APPLICABLE for outcome in outcomes):
        return CREDIT_CONTROL_NOT_APPLICABLE
    if multiple and request_type is not RequestType.EVENT:
        return SUCCESS
    for outcome in outcomes:
        if outcome not in _NOT_FAILURES:
            return RESULT_CODES[outcome]
    return SUCCESS
