"""End to end, over Diameter: after mixed traffic (data and voice sessions, usage
reports, a retransmission with the T flag answered by the engine, a CCR-T and its
retransmission, a refused CCR-I) the node's sample of the open sessions and
reservations (ocs/node_monitor.py -> ocs_sessions_open, ocs_reservations_*) is what
the session keys in Redis hold."""

from __future__ import annotations

import datetime

from ocs.metrics import Metrics
from ocs.node_monitor import sample_once
from tests.charging import messages as m
from tests.charging.conftest import EUR
from tests.quota_engine.store.test_open_counts import actual_open

WEDNESDAY = datetime.datetime(2025, 3, 5, 10, 0, tzinfo=datetime.UTC)


def data(sid: str, kind: int, number: int, msisdn: str, used: int = 0):
    return m.ccr(
        sid,
        kind,
        number,
        subscriptions=(("msisdn", msisdn),),
        services=[m.mscc(10, requested=m.rsu(), used=[m.usu(octets=used)] if used else ())],
        timestamp=WEDNESDAY,
    )


def voice(sid: str, kind: int, number: int, msisdn: str, used: int = 0):
    return m.ccr(
        sid,
        kind,
        number,
        context=m.VOICE,
        subscriptions=(("msisdn", msisdn),),
        services=[m.mscc(100, requested=m.rsu(), used=[m.usu(seconds=used)] if used else ())],
        timestamp=WEDNESDAY,
        service_information=m.ims_information("tel:+4930123456"),
    )


def gauge(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_the_sample_matches_the_sessions_open_after_mixed_traffic(ocs):
    for n in range(1, 4):
        await ocs.account(f"sub{n}", f"msisdn:49170000000{n}", money=25 * EUR)
    await ocs.account("broke", "msisdn:491700000009", money=0)
    pgw = await ocs.connect()
    answers = [
        await pgw.request(data("d1", m.INITIAL, 0, "491700000001")),
        await pgw.request(data("d2", m.INITIAL, 0, "491700000002")),
        await pgw.request(voice("v3", m.INITIAL, 0, "491700000003")),
        await pgw.request(data("d9", m.INITIAL, 0, "491700000009")),  # 4012 for its MSCC
        await pgw.request(data("d1", m.UPDATE, 1, "491700000001", used=3 * m.MIB)),
        await pgw.request(voice("v3", m.UPDATE, 1, "491700000003", used=45)),
    ]
    assert [a.result_code for a in answers] == [2001] * 6
    again = data("d1", m.UPDATE, 1, "491700000001", used=3 * m.MIB)
    again.header.is_retransmit = True  # a new End-to-End-Id: the engine answers it
    assert (await pgw.request(again)).result_code == 2001
    terminate = data("d2", m.TERMINATE, 1, "491700000002", used=m.MIB)
    assert (await pgw.request(terminate)).result_code == 2001
    assert (await pgw.request(data("d2", m.TERMINATE, 1, "491700000002"))).result_code == 2001

    metrics = Metrics()
    await sample_once(ocs.redis, metrics.node)
    actual = await actual_open(ocs.redis)
    assert actual.sessions["data"] == 2 and actual.sessions["voice"] == 1  # d1, d9; v3
    for service in ("data", "voice", "sms", "other"):
        assert gauge(metrics, "ocs_sessions_open", service=service) == actual.sessions[service]
        assert (
            gauge(metrics, "ocs_reservations_money_micro_units", service=service)
            == actual.money[service]
        )
        for unit in ("octets", "seconds", "events"):
            assert (
                gauge(metrics, "ocs_reservations_units", service=service, unit=unit)
                == actual.units[service, unit]
            )
    assert actual.money["data"] == 10 * EUR  # d1's 10 MiB; d9 holds nothing
    assert actual.units["voice", "seconds"] > 0
    reserved = sum([(await ocs.main_bucket(f"sub{n}")).reserved for n in range(1, 4)])
    assert reserved == actual.money["data"] + actual.money["voice"]
