"""PS data (Gy, 32251) end to end: grants, final balances to the micro-unit, roaming
zones, zero rating and the final unit indication."""

from __future__ import annotations

import datetime

from diameter.message.constants import (
    AVP_SERVICE_CONTEXT_ID,
    E_FINAL_UNIT_ACTION_REDIRECT,
    E_FINAL_UNIT_ACTION_TERMINATE,
    E_REDIRECT_ADDRESS_TYPE_URL,
)

from tests.charging import messages as m
from tests.charging.conftest import EUR, MMS_CONTEXT, MMS_PRICE, REDIRECT_ADDRESS

MIB = m.MIB
WEDNESDAY = datetime.datetime(2025, 3, 5, 10, 0, tzinfo=datetime.UTC)
MSISDN = "msisdn:491700000001"


def data(rating_group=10, **kw):
    return m.mscc(rating_group, **kw)


async def test_data_session_initial_update_terminate(ocs):
    account = await ocs.account("alice", MSISDN, money=25 * EUR)
    pgw = await ocs.connect()
    sid = "pgw.test.net;data;1"

    cca = await pgw.ccr(sid, m.INITIAL, 0, services=[data(requested=m.rsu())], timestamp=WEDNESDAY)
    assert cca.result_code == 2001
    assert (cca.cc_request_type, cca.cc_request_number) == (m.INITIAL, 0)
    [mscc] = cca.multiple_services_credit_control
    assert mscc.rating_group == 10 and mscc.result_code == 2001
    assert mscc.granted_service_unit.cc_total_octets == 10 * MIB  # the default grant
    assert mscc.validity_time == 1800
    assert mscc.volume_quota_threshold == 2 * MIB  # 20 % of the grant
    assert mscc.final_unit_indication is None
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (25 * EUR, 10 * EUR)

    cca = await pgw.ccr(
        sid,
        m.UPDATE,
        1,
        services=[data(requested=m.rsu(), used=[m.usu(octets=3 * MIB)])],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    [mscc] = cca.multiple_services_credit_control
    assert mscc.granted_service_unit.cc_total_octets == 10 * MIB
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (22 * EUR, 10 * EUR)

    cca = await pgw.ccr(
        sid,
        m.TERMINATE,
        2,
        services=[data(used=[m.usu(input_octets=2 * MIB, output_octets=2 * MIB + 1)])],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    assert cca.multiple_services_credit_control[0].granted_service_unit is None
    bucket = await ocs.main_bucket(account)
    # 3 MiB, then 4 MiB + 1 octet in whole-MiB blocks (5 MiB) at 1 EUR per MiB
    assert (bucket.amount, bucket.reserved) == (17 * EUR, 0)
    assert await ocs.engine.sessions_of(account) == []


async def test_requested_amount_is_granted_in_whole_blocks(ocs):
    await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    cca = await pgw.ccr(
        "pgw.test.net;data;2", services=[data(requested=m.rsu(octets=MIB + 1))], timestamp=WEDNESDAY
    )
    assert cca.multiple_services_credit_control[0].granted_service_unit.cc_total_octets == 2 * MIB


async def test_last_affordable_grant_carries_final_unit_terminate(ocs):
    account = await ocs.account("alice", MSISDN, money=3 * EUR + 500_000)
    pgw = await ocs.connect()
    cca = await pgw.ccr(
        "pgw.test.net;data;3", services=[data(requested=m.rsu())], timestamp=WEDNESDAY
    )
    assert cca.result_code == 2001
    [mscc] = cca.multiple_services_credit_control
    assert mscc.result_code == 2001
    assert mscc.granted_service_unit.cc_total_octets == 3 * MIB
    assert mscc.final_unit_indication.final_unit_action == E_FINAL_UNIT_ACTION_TERMINATE
    assert mscc.final_unit_indication.redirect_server is None
    assert (await ocs.main_bucket(account)).reserved == 3 * EUR


async def test_final_unit_redirect(ocs):
    await ocs.account("alice", MSISDN, money=2 * EUR, plan="prepaid-redirect")
    pgw = await ocs.connect()
    cca = await pgw.ccr(
        "pgw.test.net;data;4", services=[data(requested=m.rsu())], timestamp=WEDNESDAY
    )
    [mscc] = cca.multiple_services_credit_control
    assert mscc.granted_service_unit.cc_total_octets == 2 * MIB
    fui = mscc.final_unit_indication
    assert fui.final_unit_action == E_FINAL_UNIT_ACTION_REDIRECT
    assert fui.redirect_server.redirect_address_type == E_REDIRECT_ADDRESS_TYPE_URL
    assert fui.redirect_server.redirect_server_address == REDIRECT_ADDRESS


async def test_exhausted_rating_group_gets_4012_while_the_portal_stays_free(ocs):
    account = await ocs.account("alice", MSISDN, money=500_000)  # less than one MiB block
    pgw = await ocs.connect()
    cca = await pgw.ccr(
        "pgw.test.net;data;5",
        services=[data(10, requested=m.rsu()), data(999, requested=m.rsu())],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001  # the request succeeded as a whole
    by_group = m.mscc_by_group(cca)
    assert by_group[10].result_code == 4012
    assert by_group[10].granted_service_unit is None
    assert by_group[10].final_unit_indication is None  # never together with 4012
    assert by_group[999].result_code == 4011
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (500_000, 0)


async def test_only_zero_rated_services_get_4011(ocs):
    await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    cca = await pgw.ccr(
        "pgw.test.net;data;6", services=[data(999, requested=m.rsu())], timestamp=WEDNESDAY
    )
    assert cca.result_code == 4011
    assert cca.multiple_services_credit_control[0].result_code == 4011
    assert cca.multiple_services_credit_control[0].granted_service_unit is None


async def test_unknown_rating_group_gets_5031_in_its_mscc(ocs):
    await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    cca = await pgw.ccr(
        "pgw.test.net;data;7",
        services=[data(10, requested=m.rsu()), data(77, requested=m.rsu())],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    by_group = m.mscc_by_group(cca)
    assert by_group[10].result_code == 2001
    assert by_group[77].result_code == 5031


async def test_single_service_request_without_a_tariff_gets_5031_with_failed_avp(ocs):
    await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    cca = await pgw.ccr("pgw.test.net;data;8", context="video@operator.example", requested=m.rsu())
    assert cca.result_code == 5031
    [failed] = m.failed_avps(cca)
    assert (failed.code, failed.value) == (AVP_SERVICE_CONTEXT_ID, "video@operator.example")


async def test_session_opened_without_mscc_then_rating_groups_added(ocs):
    account = await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    sid = "pgw.test.net;data;9"
    cca = await pgw.ccr(sid, m.INITIAL, 0, multiple_services=1, timestamp=WEDNESDAY)
    assert cca.result_code == 2001
    assert cca.multiple_services_credit_control == []
    cca = await pgw.ccr(
        sid, m.UPDATE, 1, services=[data(requested=m.rsu(octets=MIB))], timestamp=WEDNESDAY
    )
    assert cca.result_code == 2001
    assert cca.multiple_services_credit_control[0].granted_service_unit.cc_total_octets == MIB
    cca = await pgw.ccr(
        sid, m.TERMINATE, 2, services=[data(used=[m.usu(octets=MIB)])], timestamp=WEDNESDAY
    )
    assert cca.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (9 * EUR, 0)


async def test_final_reporting_reason_ends_one_rating_group(ocs):
    account = await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    sid = "pgw.test.net;data;10"
    await pgw.ccr(sid, m.INITIAL, 0, services=[data(requested=m.rsu())], timestamp=WEDNESDAY)
    cca = await pgw.ccr(
        sid,
        m.UPDATE,
        1,
        services=[data(used=[m.usu(octets=MIB)], reporting_reason=2)],  # FINAL
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    assert cca.multiple_services_credit_control[0].granted_service_unit is None
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (9 * EUR, 0)


# ------------------------------------------------------------------ roaming


async def roam(ocs, visited: str | None, used: int) -> int:
    account = await ocs.account("roamer", MSISDN, money=25 * EUR)
    pgw = await ocs.connect()
    sid = f"pgw.test.net;roam;{visited}"
    info = m.ps_information(visited, "internet")
    cca = await pgw.ccr(
        sid,
        m.INITIAL,
        0,
        services=[data(requested=m.rsu(octets=MIB))],
        service_information=info,
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    cca = await pgw.ccr(
        sid,
        m.TERMINATE,
        1,
        services=[data(used=[m.usu(octets=used)])],
        service_information=info,
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert bucket.reserved == 0
    return 25 * EUR - bucket.amount


async def test_home_network_data_price(ocs):
    assert await roam(ocs, "00101", 2 * MIB) == 2 * EUR


async def test_eu_roaming_data_price(ocs):
    assert await roam(ocs, "20801", 2 * MIB) == 4 * EUR  # France: zone eu, 2 EUR per MiB


async def test_world_roaming_data_price(ocs):
    assert await roam(ocs, "310260", MIB + 1) == 20 * EUR  # USA: zone world, 10 EUR per MiB


# ------------------------------------------------------------------ single-service mode


async def test_single_service_event_is_granted_at_the_top_level(ocs):
    account = await ocs.account("alice", MSISDN)
    mmsc = await ocs.connect("mmsc.test.net")
    cca = await mmsc.ccr(
        "mmsc.test.net;mms;1",
        m.EVENT,
        0,
        context=MMS_CONTEXT,
        requested=m.rsu(events=1),
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    assert cca.multiple_services_credit_control == []
    assert cca.granted_service_unit.cc_service_specific_units == 1
    assert (await ocs.main_bucket(account)).amount == 10 * EUR - MMS_PRICE


async def test_single_service_session(ocs):
    account = await ocs.account("alice", MSISDN, money=EUR)
    mmsc = await ocs.connect("mmsc.test.net")
    sid = "mmsc.test.net;mms;2"
    cca = await mmsc.ccr(
        sid, m.INITIAL, 0, context=MMS_CONTEXT, requested=m.rsu(events=10), timestamp=WEDNESDAY
    )
    assert cca.result_code == 2001
    assert cca.multiple_services_credit_control == []
    assert cca.granted_service_unit.cc_service_specific_units == 5  # all 1 EUR affords
    assert cca.validity_time == 1800
    assert cca.final_unit_indication.final_unit_action == E_FINAL_UNIT_ACTION_TERMINATE
    cca = await mmsc.ccr(
        sid, m.TERMINATE, 1, context=MMS_CONTEXT, used=[m.usu(events=2)], timestamp=WEDNESDAY
    )
    assert cca.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (EUR - 2 * MMS_PRICE, 0)


async def test_single_service_credit_limit_is_4012_at_the_top(ocs):
    await ocs.account("alice", MSISDN, money=100_000)
    mmsc = await ocs.connect("mmsc.test.net")
    cca = await mmsc.ccr(
        "mmsc.test.net;mms;3", context=MMS_CONTEXT, requested=m.rsu(events=1), timestamp=WEDNESDAY
    )
    assert cca.result_code == 4012
    assert cca.granted_service_unit is None
