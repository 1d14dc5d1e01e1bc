"""Service-Information only in CCR-Initial (issue 9, item 1), over real TCP with
python-diameter as the network element: the session remembers the called party and the
visited network, so the CCR-U and CCR-T that omit them are rated as the CCR-I was.
Demo catalog prices: voice national 0.10 EUR per minute (60/60), data in a "world"
network 10 EUR per MiB, in an "eu" one 2 EUR, at home 1 EUR."""

from __future__ import annotations

import datetime

import pytest

from tests.charging import messages as m
from tests.charging.conftest import EUR

MIB = m.MIB
WEDNESDAY = datetime.datetime(2025, 3, 5, 10, 0, tzinfo=datetime.UTC)
MSISDN = "msisdn:491700000001"


async def test_voice_call_with_ims_information_only_in_the_initial_request(ocs):
    account = await ocs.account("caller", MSISDN)
    ims = await ocs.connect("scscf.test.net")
    sid = "scscf.test.net;call;ctx"
    cca = await ims.ccr(
        sid,
        m.INITIAL,
        0,
        context=m.VOICE,
        services=[m.mscc(100, requested=m.rsu())],
        service_information=m.ims_information("tel:+4930123456"),
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    [mscc] = cca.multiple_services_credit_control
    assert (mscc.result_code, mscc.granted_service_unit.cc_time) == (2001, 300)
    for number in (1, 2):
        cca = await ims.ccr(
            sid,
            m.UPDATE,
            number,
            context=m.VOICE,
            services=[m.mscc(100, requested=m.rsu(), used=[m.usu(seconds=60)])],
            timestamp=WEDNESDAY,
        )
        assert cca.result_code == 2001
        [mscc] = cca.multiple_services_credit_control
        assert (mscc.result_code, mscc.granted_service_unit.cc_time) == (2001, 300)
    cca = await ims.ccr(
        sid,
        m.TERMINATE,
        3,
        context=m.VOICE,
        services=[m.mscc(100, used=[m.usu(seconds=60)])],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    [mscc] = cca.multiple_services_credit_control
    assert mscc.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (10 * EUR - 300_000, 0)  # 3 national minutes


@pytest.mark.parametrize(("visited", "per_mib"), [("310260", 10 * EUR), ("20801", 2 * EUR)])
async def test_roaming_data_with_ps_information_only_in_the_initial_request(ocs, visited, per_mib):
    """1 MiB per report, 3GPP-SGSN-MCC-MNC only in CCR-I: every MiB at the zone's rate
    (before issue 9, the reports after the first were rated at home: 11 EUR for 2 MiB
    in the world zone instead of 20)."""
    account = await ocs.account("roamer", MSISDN, money=50 * EUR)
    pgw = await ocs.connect()
    sid = f"pgw.test.net;roam;{visited}"
    cca = await pgw.ccr(
        sid,
        m.INITIAL,
        0,
        services=[m.mscc(10, requested=m.rsu(octets=MIB))],
        service_information=m.ps_information(visited=visited, apn="internet"),
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    cca = await pgw.ccr(
        sid,
        m.UPDATE,
        1,
        services=[m.mscc(10, requested=m.rsu(octets=MIB), used=[m.usu(octets=MIB)])],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert bucket.amount == 50 * EUR - per_mib
    cca = await pgw.ccr(
        sid,
        m.TERMINATE,
        2,
        services=[m.mscc(10, used=[m.usu(octets=MIB)])],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (50 * EUR - 2 * per_mib, 0)
