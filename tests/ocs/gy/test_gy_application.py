"""CreditControlApplication: one engine call per batch, answers in request order."""

from __future__ import annotations

import logging

from diameter.message import Message
from diameter.message.constants import (
    AVP_CC_REQUEST_NUMBER,
    AVP_CC_REQUEST_TYPE,
    AVP_ORIGIN_REALM,
    AVP_SESSION_ID,
)
from redis.exceptions import ResponseError

from ocs.gy import application as application_module
from ocs.gy.application import CCR, CREDIT_CONTROL_APPLICATION, CreditControlApplication
from ocs.gy.peer_routes import Routes
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


# ------------------------------------------------------ one bad request fails alone (issue 9)


def bad_origin_realm(session_id: str) -> bytes:
    """A valid CCR but for an Origin-Realm that is not UTF-8."""
    message = m.ccr(session_id, services=[m.mscc(10, requested=m.rsu())])
    message.origin_realm = b"QQQQ.net"
    return message.as_bytes().replace(b"QQQQ", b"\xff\xfe\xfd\xfc")


async def test_invalid_origin_realm_fails_alone_and_the_neighbours_are_charged():
    engine = Engine()
    routes = Routes([])
    connection = object()  # what the transport passes: the peer connection
    app = CreditControlApplication(CODEC, engine, routes=routes)
    good = decode(m.ccr("pgw.test.net;r;1", services=[m.mscc(10, requested=m.rsu())]))
    bad = decode(bad_origin_realm("pgw.test.net;r;2"))
    also_good = decode(m.ccr("pgw.test.net;r;3", services=[m.mscc(10, requested=m.rsu())]))
    answers = await app.handle([good, bad, also_good], connection)
    assert [a.result_code for a in answers] == [2001, 5004, 2001]
    assert [r.session_id for r in engine.calls[0]] == ["pgw.test.net;r;1", "pgw.test.net;r;3"]
    assert answers[1].failed_avp == bad.raw_avp(AVP_ORIGIN_REALM)
    assert routes._learned["pgw.test.net"] == (connection, "test.net")


async def test_client_mistakes_log_a_warning_without_a_traceback(caplog):
    app = CreditControlApplication(CODEC, Engine(), routes=Routes([]))
    with caplog.at_level(logging.DEBUG):
        await app.handle(batch() + [decode(bad_origin_realm("pgw.test.net;r;4"))], object())
    rejected = [r for r in caplog.records if r.getMessage() == "ccr_rejected"]
    assert [r.levelno for r in rejected] == [logging.WARNING] * 3
    assert all(r.exc_info is None for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_internal_fault_parsing_one_request_fails_it_alone_with_5012(monkeypatch, caplog):
    real_parse = application_module.parse_ccr

    def parse_ccr(codec, message, now, *numbering):
        if message.get(AVP_SESSION_ID) == "pgw.test.net;b;4":
            raise RuntimeError("a bug")
        return real_parse(codec, message, now, *numbering)

    monkeypatch.setattr(application_module, "parse_ccr", parse_ccr)
    engine = Engine()
    with caplog.at_level(logging.ERROR):
        answers = await CreditControlApplication(CODEC, engine).handle(batch(), None)
    assert [a.result_code for a in answers] == [2001, 5004, 5005, 5012]
    assert answers[3].error_message == "internal error"
    echo = {code: value for code, value in answers[3].avps if isinstance(value, int)}
    assert echo[AVP_CC_REQUEST_TYPE] == m.UPDATE and echo[AVP_CC_REQUEST_NUMBER] == 1
    assert [r.session_id for r in engine.calls[0]] == ["pgw.test.net;b;1"]
    [fault] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert fault.exc_info is not None  # our bug: the traceback is wanted


async def test_an_internal_fault_answering_one_request_fails_it_alone_with_5012(monkeypatch):
    real_build = application_module.build_cca

    def build_cca(parsed, result):
        if parsed.request.session_id == "pgw.test.net;b;1":
            raise ValueError("a bug")
        return real_build(parsed, result)

    monkeypatch.setattr(application_module, "build_cca", build_cca)
    answers = await CreditControlApplication(CODEC, Engine()).handle(batch(), None)
    assert [a.result_code for a in answers] == [5012, 5004, 5005, 2001]
