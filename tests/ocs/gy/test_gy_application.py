"""CreditControlApplication: one engine call per batch, answers in request order."""

from __future__ import annotations

import logging

import pytest
from diameter.message import Message
from diameter.message.constants import (
    AVP_CC_REQUEST_NUMBER,
    AVP_CC_REQUEST_TYPE,
    AVP_ORIGIN_REALM,
    AVP_SESSION_ID,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

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


async def test_redis_unavailable_is_logged_without_a_trace_a_bug_with_one(caplog):
    caplog.set_level(logging.ERROR, logger="ocs.gy")
    for error, traced in (
        (RedisTimeoutError("Redis did not answer within 1 s"), False),
        (RedisConnectionError("Connection refused"), False),
        (RuntimeError("a bug"), True),
    ):
        caplog.clear()
        answers = await CreditControlApplication(CODEC, Engine(fail=error)).handle(batch(), None)
        assert [a.result_code for a in answers] == [5012, 5004, 5005, 5012]
        [record] = [r for r in caplog.records if r.getMessage() == "charging_failed"]
        assert record.levelno == logging.ERROR
        assert (record.exc_info is not None) is traced, error


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


# ------------------------------- Credit-Control-Failure-Handling while charging is unavailable


def encoded(request, answer):
    """The answer as the transport sends it, decoded by python-diameter."""
    return m.answer_of(CODEC.encode_answer(request.header, answer, request.get(AVP_SESSION_ID)))


@pytest.mark.parametrize(
    ("setting", "value"), [("terminate", 0), ("continue", 1), ("retry_and_terminate", 2)]
)
async def test_unavailable_charging_5012_carries_the_configured_failure_handling(setting, value):
    requests = batch()
    app = CreditControlApplication(
        CODEC, Engine(fail=ConnectionError("redis down")), failure_handling=setting
    )
    answers = await app.handle(requests, None)
    assert [a.result_code for a in answers] == [5012, 5004, 5005, 5012]
    first, invalid, missing, last = (encoded(r, a) for r, a in zip(requests, answers, strict=True))
    assert first.result_code == 5012 and first.credit_control_failure_handling == value
    assert last.credit_control_failure_handling == value
    assert first.cc_request_type == m.INITIAL and last.cc_request_type == m.UPDATE
    # a client's mistake is no charging failure: no failure handling to apply
    for answer in (invalid, missing):
        assert getattr(answer, "credit_control_failure_handling", None) is None


async def test_failure_handling_also_without_an_engine_and_in_a_partly_failed_batch():
    requests = batch()
    answers = await CreditControlApplication(CODEC, failure_handling="continue").handle(
        requests, None
    )
    assert encoded(requests[0], answers[0]).credit_control_failure_handling == 1
    answers = await CreditControlApplication(
        CODEC, PartlyFailingEngine(), failure_handling="terminate"
    ).handle(requests, None)
    assert [a.result_code for a in answers] == [2001, 5004, 5005, 5012]
    assert (
        getattr(encoded(requests[0], answers[0]), "credit_control_failure_handling", None) is None
    )
    assert encoded(requests[3], answers[3]).credit_control_failure_handling == 0


async def test_failure_handling_none_sends_no_avp_and_is_the_default():
    requests = batch()
    for app in (
        CreditControlApplication(CODEC, Engine(fail=TimeoutError()), failure_handling="none"),
        CreditControlApplication(CODEC, Engine(fail=TimeoutError())),
    ):
        answers = await app.handle(requests, None)
        answer = encoded(requests[0], answers[0])
        assert answer.result_code == 5012
        assert getattr(answer, "credit_control_failure_handling", None) is None


# ------------------------------------------------ the answer's kind, MSCC and unit counts


async def test_answers_carry_their_cc_request_type_name_for_the_transport():
    answers = await CreditControlApplication(CODEC, Engine()).handle(batch(), None)
    assert [a.kind for a in answers] == ["initial", None, None, "update"]
    answers = await CreditControlApplication(CODEC, Engine(fail=TimeoutError())).handle(
        batch(), None
    )
    assert [a.kind for a in answers] == ["initial", None, None, "update"]
    parsed_type_error = m.ccr("pgw.test.net;k;1", m.TERMINATE, 3, origin_host="")
    [answer] = await CreditControlApplication(CODEC, Engine()).handle(
        [decode(parsed_type_error)], None
    )
    assert answer.result_code == 5004 and answer.kind == "terminate"


class SelectiveEngine(Engine):
    """Rating group 20 is out of credit; the rest granted 100 octets."""

    async def charge(self, requests):
        results = await super().charge(requests)
        for result in results:
            for grant in result.services:
                if grant.rating_group == 20:
                    grant.outcome, grant.granted = Outcome.CREDIT_LIMIT_REACHED, 0
        return results


async def test_mscc_result_codes_and_units_are_counted_by_service():
    from ocs.metrics import Metrics

    metrics = Metrics(process=False)
    app = CreditControlApplication(CODEC, SelectiveEngine(), observer=metrics.diameter)
    requests = [
        m.ccr(
            "pgw.test.net;u;1",
            m.UPDATE,
            1,
            services=[
                m.mscc(10, requested=m.rsu(), used=[m.usu(octets=70)]),
                m.mscc(20, requested=m.rsu(), used=[m.usu(octets=30)]),
            ],
        ),
        m.ccr(
            "pgw.test.net;u;2",
            context=m.VOICE,
            services=[m.mscc(1, requested=m.rsu(seconds=60))],
        ),
    ]
    answers = await app.handle([decode(r) for r in requests], None)
    assert [a.result_code for a in answers] == [2001, 2001]

    def value(name, **labels):
        return metrics.registry.get_sample_value(name, labels)

    mscc = "ocs_diameter_mscc_total"
    assert value(mscc, service="data", result_code="2001") == 1
    assert value(mscc, service="data", result_code="4012") == 1
    assert value(mscc, service="voice", result_code="2001") == 1
    granted, used = "ocs_charging_granted_units_total", "ocs_charging_used_units_total"
    # the engine stub grants in octets whatever the service (Unit.OCTETS)
    assert value(granted, service="data", unit="octets") == 100  # RG 20 was granted nothing
    assert value(used, service="data", unit="octets") == 100  # both reports were charged
    assert value(granted, service="voice", unit="octets") == 100


async def test_nothing_is_counted_for_answers_not_charged():
    from ocs.metrics import Metrics

    metrics = Metrics(process=False)
    app = CreditControlApplication(CODEC, Engine(fail=TimeoutError()), observer=metrics.diameter)
    await app.handle(batch(), None)
    assert (
        metrics.registry.get_sample_value(
            "ocs_diameter_mscc_total", {"service": "data", "result_code": "2001"}
        )
        == 0
    )
    assert (
        metrics.registry.get_sample_value(
            "ocs_charging_granted_units_total", {"service": "data", "unit": "octets"}
        )
        == 0
    )
