"""CreditControlApplication: one engine call per batch, answers in request order."""

from __future__ import annotations

from diameter.message import Message
from diameter.message.constants import AVP_CC_REQUEST_NUMBER, AVP_CC_REQUEST_TYPE
from redis.exceptions import ResponseError

from ocs.gy.application import CCR, CREDIT_CONTROL_APPLICATION, CreditControlApplication
from protocol.messages import Codec, LocalIdentity
from quota_engine.charging.engine import ChargingBatchError
from quota_engine.model import ChargingResult, Outcome, RequestType, ServiceGrant, Unit
from tests.charging import messages as m

CODEC = Codec(LocalIdentity("ocs.test.net", "test.net"))


class Engine:
    def __init__(self, fail: Exception | None = None, short: bool = False) -> None:
        self.calls: list[list] = []
        self.fail = fail
        self.short = short

    async def charge(self, requests):
        self.calls.append(list(requests))
        if self.fail is not None:
            raise self.fail
        results = [
            ChargingResult(
                Outcome.OK,
                [
                    ServiceGrant(s.rating_group, s.service_identifier, Outcome.OK, Unit.OCTETS, 100)
                    for s in r.services
                ],
            )
            for r in requests
        ]
        return results[:-1] if self.short else results


def decode(message):
    data = message if isinstance(message, bytes) else message.as_bytes()
    return CODEC.decode(data)


def batch():
    good = m.ccr("pgw.test.net;b;1", services=[m.mscc(10, requested=m.rsu())])
    bad_type = m.ccr("pgw.test.net;b;2", request_type=9, number=4)
    no_type = m.ccr("pgw.test.net;b;3", number=5)
    no_type = Message(no_type.header, [a for a in no_type.avps if a.code != AVP_CC_REQUEST_TYPE])
    also_good = m.ccr(
        "pgw.test.net;b;4", m.UPDATE, 1, services=[m.mscc(10, used=[m.usu(octets=5)])]
    )
    return [decode(x) for x in (good, bad_type, no_type.as_bytes(), also_good)]


def test_application_identity():
    app = CreditControlApplication(CODEC)
    assert app.application_id == CREDIT_CONTROL_APPLICATION == 4
    assert app.commands == frozenset({CCR}) == frozenset({272})


async def test_one_engine_call_per_batch_with_the_valid_requests_in_order():
    engine = Engine()
    app = CreditControlApplication(CODEC, engine, clock=lambda: 1_000.9)
    answers = await app.handle(batch(), peer=None)
    assert len(engine.calls) == 1
    [charged] = engine.calls
    assert [r.session_id for r in charged] == ["pgw.test.net;b;1", "pgw.test.net;b;4"]
    assert [r.request_type for r in charged] == [RequestType.INITIAL, RequestType.UPDATE]
    assert charged[0].timestamp == 1_000
    assert [a.result_code for a in answers] == [2001, 5004, 5005, 2001]
    echo = {code: value for code, value in answers[1].avps if isinstance(value, int)}
    assert echo[AVP_CC_REQUEST_TYPE] == 9 and echo[AVP_CC_REQUEST_NUMBER] == 4
    echo = {code: value for code, value in answers[2].avps if isinstance(value, int)}
    assert echo[AVP_CC_REQUEST_TYPE] == 0 and echo[AVP_CC_REQUEST_NUMBER] == 5
    assert answers[1].failed_avp and answers[2].failed_avp


async def test_a_batch_of_only_invalid_requests_does_not_call_the_engine():
    engine = Engine()
    answers = await CreditControlApplication(CODEC, engine).handle(batch()[1:3], None)
    assert engine.calls == []
    assert [a.result_code for a in answers] == [5004, 5005]


async def test_without_engine_valid_requests_get_5012():
    answers = await CreditControlApplication(CODEC).handle(batch(), None)
    assert [a.result_code for a in answers] == [5012, 5004, 5005, 5012]
    assert answers[0].error_message == "charging engine not configured"


async def test_engine_failure_answers_5012_and_keeps_validation_answers():
    engine = Engine(fail=ConnectionError("redis down"))
    answers = await CreditControlApplication(CODEC, engine).handle(batch(), None)
    assert [a.result_code for a in answers] == [5012, 5004, 5005, 5012]
    assert answers[0].error_message == "charging engine unavailable"


async def test_engine_returning_too_few_results_is_a_failure():
    engine = Engine(short=True)
    answers = await CreditControlApplication(CODEC, engine).handle(batch(), None)
    assert [a.result_code for a in answers] == [5012, 5004, 5005, 5012]


class PartlyFailingEngine(Engine):
    """The first request of the batch completes, the second meets a script error."""

    async def charge(self, requests):
        results = await super().charge(requests)
        raise ChargingBatchError([results[0], ResponseError("WRONGTYPE")])


async def test_partly_failed_batch_answers_the_completed_requests():
    engine = PartlyFailingEngine()
    answers = await CreditControlApplication(CODEC, engine).handle(batch(), None)
    assert [a.result_code for a in answers] == [2001, 5004, 5005, 5012]
    assert answers[3].error_message == "charging engine unavailable"
