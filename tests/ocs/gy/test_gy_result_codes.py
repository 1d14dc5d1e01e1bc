"""The one Outcome -> Result-Code table and the rules that combine per-service codes."""

from __future__ import annotations

import pytest
from diameter.message import constants as c

from ocs.gy.result_codes import RESULT_CODES, answer_codes, result_code
from quota_engine.model import ChargingResult, Outcome, RequestType, ServiceGrant

EXPECTED = {
    Outcome.OK: c.E_RESULT_CODE_DIAMETER_SUCCESS,
    Outcome.UNKNOWN_SUBSCRIBER: c.E_RESULT_CODE_DIAMETER_USER_UNKNOWN,
    Outcome.SERVICE_DENIED: c.E_RESULT_CODE_DIAMETER_END_USER_SERVICE_DENIED,
    Outcome.NOT_APPLICABLE: c.E_RESULT_CODE_DIAMETER_CREDIT_CONTROL_NOT_APPLICABLE,
    Outcome.CREDIT_LIMIT_REACHED: c.E_RESULT_CODE_DIAMETER_CREDIT_LIMIT_REACHED,
    Outcome.NO_TARIFF: c.E_RESULT_CODE_DIAMETER_RATING_FAILED,
    Outcome.OUT_OF_ORDER: c.E_RESULT_CODE_DIAMETER_UNABLE_TO_COMPLY,
    Outcome.UNKNOWN_SESSION: c.E_RESULT_CODE_DIAMETER_UNKNOWN_SESSION_ID,
    Outcome.INSUFFICIENT_BALANCE: c.E_RESULT_CODE_DIAMETER_SUCCESS,
}


def test_every_outcome_has_exactly_one_result_code():
    assert set(RESULT_CODES) == set(Outcome)
    assert RESULT_CODES == EXPECTED


@pytest.mark.parametrize("outcome", list(Outcome))
def test_result_code_of_each_outcome(outcome):
    assert result_code(outcome) == EXPECTED[outcome]


def test_the_numbers_are_the_rfc_ones():
    assert [RESULT_CODES[o] for o in Outcome] == [
        2001,
        5030,
        4010,
        4011,
        4012,
        5031,
        5012,
        5002,
        2001,
    ]


def result(*outcomes: Outcome, outcome: Outcome = Outcome.OK) -> ChargingResult:
    return ChargingResult(outcome, [ServiceGrant(i, None, o) for i, o in enumerate(outcomes)])


SESSION = (RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE)


@pytest.mark.parametrize("kind", SESSION)
def test_multiple_services_session_succeeds_despite_failing_services(kind):
    codes = answer_codes(
        result(Outcome.OK, Outcome.CREDIT_LIMIT_REACHED, Outcome.NO_TARIFF), kind, True
    )
    assert codes == (2001, [2001, 4012, 5031])


def test_multiple_services_session_with_every_service_out_of_credit_still_2001():
    assert answer_codes(result(Outcome.CREDIT_LIMIT_REACHED), RequestType.UPDATE, True) == (
        2001,
        [4012],
    )


@pytest.mark.parametrize("multiple", [True, False])
def test_every_service_zero_rated_is_4011(multiple):
    codes = answer_codes(
        result(Outcome.NOT_APPLICABLE, Outcome.NOT_APPLICABLE), RequestType.INITIAL, multiple
    )
    assert codes == (4011, [4011, 4011])


def test_one_zero_rated_service_among_others_is_not_4011():
    codes = answer_codes(result(Outcome.OK, Outcome.NOT_APPLICABLE), RequestType.INITIAL, True)
    assert codes == (2001, [2001, 4011])


@pytest.mark.parametrize(
    ("outcome", "code"),
    [(Outcome.CREDIT_LIMIT_REACHED, 4012), (Outcome.NO_TARIFF, 5031), (Outcome.OK, 2001)],
)
def test_single_service_request_takes_the_service_code(outcome, code):
    assert answer_codes(result(outcome), RequestType.INITIAL, False) == (code, [code])


@pytest.mark.parametrize("multiple", [True, False])
def test_event_is_all_or_nothing(multiple):
    codes = answer_codes(
        result(Outcome.OK, Outcome.CREDIT_LIMIT_REACHED), RequestType.EVENT, multiple
    )
    assert codes == (4012, [2001, 4012])


def test_event_zero_rated_with_a_paid_service_succeeds():
    assert answer_codes(result(Outcome.OK, Outcome.NOT_APPLICABLE), RequestType.EVENT, True) == (
        2001,
        [2001, 4011],
    )


def test_check_balance_without_credit_succeeds():
    codes = answer_codes(result(Outcome.INSUFFICIENT_BALANCE), RequestType.EVENT, True)
    assert codes == (2001, [2001])


@pytest.mark.parametrize(
    "outcome",
    [o for o in Outcome if o is not Outcome.OK],
)
@pytest.mark.parametrize("multiple", [True, False])
def test_request_level_outcome_wins(outcome, multiple):
    top, _ = answer_codes(result(Outcome.OK, outcome=outcome), RequestType.UPDATE, multiple)
    assert top == EXPECTED[outcome]


def test_no_services_is_success():
    assert answer_codes(result(), RequestType.TERMINATE, True) == (2001, [])
