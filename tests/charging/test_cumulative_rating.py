"""Cumulative rating over real TCP (python-diameter as the network element): what a
session costs does not depend on how the network sliced its usage into reports
(docs/catalog.md, "Cumulative rating per session and rating group").

The prices have no time band (mobile voice 0.15 EUR/min in 60 s increments, home data
1 EUR per whole MiB), so the expectations hold whatever day the tests run."""

from __future__ import annotations

from tests.charging import messages as m
from tests.charging.conftest import EUR, NetworkElement, Ocs

MIB = m.MIB
MSISDN = "msisdn:491700000001"
MOBILE = "tel:+4917012345678"  # 0.15 EUR/min, 60 s then 60 s


async def voice_report(
    ims: NetworkElement, sid: str, kind: int, number: int, seconds: int | None
) -> int:
    """One CCR of a call (IMS-Information on every request); returns the MSCC's
    Result-Code."""
    used = [m.usu(seconds=seconds)] if seconds is not None else []
    requested = m.rsu() if kind != m.TERMINATE else None
    cca = await ims.ccr(
        sid,
        kind,
        number,
        context=m.VOICE,
        services=[m.mscc(100, requested=requested, used=used)],
        service_information=m.ims_information(MOBILE),
    )
    assert cca.result_code == 2001
    [mscc] = cca.multiple_services_credit_control
    return int(mscc.result_code)


async def test_a_50_s_call_reported_30_plus_20_costs_exactly_one_minute(ocs: Ocs) -> None:
    account = await ocs.account("caller", MSISDN, money=10 * EUR)
    ims = await ocs.connect("scscf.test.net")
    sid = "scscf.test.net;call;cumulative"
    assert await voice_report(ims, sid, m.INITIAL, 0, None) == 2001
    assert await voice_report(ims, sid, m.UPDATE, 1, 30) == 2001
    assert await voice_report(ims, sid, m.TERMINATE, 2, 20) == 2001
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (10 * EUR - 150_000, 0)  # one minute


async def data_session(pgw: NetworkElement, sid: str, msisdn: str, reports: list[int]) -> None:
    """CCR-I, one CCR-U per report but the last (each asking for a new grant), and a
    CCR-T with the last report."""
    subscriber = (("msisdn", msisdn),)
    cca = await pgw.ccr(
        sid, m.INITIAL, 0, subscriptions=subscriber, services=[m.mscc(10, requested=m.rsu())]
    )
    assert cca.result_code == 2001
    for number, octets in enumerate(reports[:-1], start=1):
        cca = await pgw.ccr(
            sid,
            m.UPDATE,
            number,
            subscriptions=subscriber,
            services=[m.mscc(10, requested=m.rsu(), used=[m.usu(octets=octets)])],
        )
        assert cca.result_code == 2001
        [mscc] = cca.multiple_services_credit_control
        assert mscc.result_code == 2001 and mscc.final_unit_indication is None
    cca = await pgw.ccr(
        sid,
        m.TERMINATE,
        len(reports),
        subscriptions=subscriber,
        services=[m.mscc(10, used=[m.usu(octets=reports[-1])])],
    )
    assert cca.result_code == 2001


async def test_data_in_1000_small_slices_costs_what_one_report_costs(ocs: Ocs) -> None:
    # 1,500,000 octets: 2 whole MiB = 2.00 EUR, in one report or in 1,000 of 1,500
    whole = await ocs.account("whole", "msisdn:491700000002", money=25 * EUR)
    sliced = await ocs.account("sliced", "msisdn:491700000003", money=25 * EUR)
    pgw = await ocs.connect()
    await data_session(pgw, "pgw.test.net;data;whole", "491700000002", [1_500_000])
    await data_session(pgw, "pgw.test.net;data;sliced", "491700000003", [1_500] * 1000)
    for account in (whole, sliced):
        bucket = await ocs.main_bucket(account)
        assert (bucket.amount, bucket.reserved) == (23 * EUR, 0), account
