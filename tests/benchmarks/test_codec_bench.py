"""Codec benchmark: one Gy CCR-Update in, its CCA out; ours against python-diameter.

Both sides do the same work a Gy handler does for one request: decode the CCR, read
the ~15 AVPs the handler needs (session, request type/number, subscription ids,
service context, per-MSCC rating group, requested and used units, reporting reason,
SGSN MCC-MNC, APN) and build and serialise the CCA with two MSCCs.

Run with ``pytest tests/benchmarks/test_codec_bench.py --benchmark-only``; the plain
test at the end runs in the default suite and checks both sides read the same values.
"""

from __future__ import annotations

import datetime

import pytest
from diameter.message import Message
from diameter.message.avp.grouped import (
    GrantedServiceUnit,
    MultipleServicesCreditControl,
    PsInformation,
    RequestedServiceUnit,
    ServiceInformation,
    SubscriptionId,
    UsedServiceUnit,
)
from diameter.message.commands import CreditControlRequest

from cext import codec
from protocol.dictionary import build_type_table
from protocol.dictionary import constants as c

TGPP = c.VENDOR_TGPP
SESSION_ID = "pgw1.operator.net;1700000000;42;apn-internet"


def _ccr_update() -> bytes:
    """A realistic Gy CCR-Update, built with python-diameter (independent of ours)."""
    ccr = CreditControlRequest()
    ccr.header.hop_by_hop_identifier = 0x1234
    ccr.header.end_to_end_identifier = 0x5678
    ccr.session_id = SESSION_ID
    ccr.origin_host = b"pgw1.operator.net"
    ccr.origin_realm = b"operator.net"
    ccr.destination_realm = b"ocs.operator.net"
    ccr.auth_application_id = 4
    ccr.service_context_id = "32251@3gpp.org"
    ccr.cc_request_type = c.E_CC_REQUEST_TYPE_UPDATE_REQUEST
    ccr.cc_request_number = 3
    ccr.event_timestamp = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
    ccr.subscription_id = [
        SubscriptionId(subscription_id_type=0, subscription_id_data="447700900123"),
        SubscriptionId(subscription_id_type=1, subscription_id_data="234150999999999"),
    ]
    ccr.multiple_services_indicator = 1
    for rating_group, total in ((10, 5_000_000), (20, 123_456)):
        ccr.multiple_services_credit_control.append(
            MultipleServicesCreditControl(
                requested_service_unit=RequestedServiceUnit(cc_total_octets=0),
                used_service_unit=[
                    UsedServiceUnit(
                        cc_total_octets=total,
                        cc_input_octets=total // 4,
                        cc_output_octets=total - total // 4,
                        reporting_reason=c.E_3GPP_REPORTING_REASON_QUOTA_EXHAUSTED,
                    )
                ],
                rating_group=rating_group,
            )
        )
    ccr.service_information = ServiceInformation(
        ps_information=PsInformation(
            tgpp_charging_id=b"\x00\x00\x30\x39",
            tgpp_pdp_type=0,
            pdp_address=["10.20.30.40"],
            sgsn_address=["192.0.2.10"],
            ggsn_address=["192.0.2.20"],
            tgpp_imsi_mcc_mnc="23415",
            tgpp_ggsn_mcc_mnc="23415",
            tgpp_sgsn_mcc_mnc="23415",
            called_station_id="internet",
            tgpp_ms_timezone=b"\x40\x00",
            tgpp_user_location_info=b"\x82\x32\xf4\x51\x00\x01\x32\xf4\x51\x00\x00\x00\x01",
        )
    )
    return ccr.as_bytes()


CCR = _ccr_update()
TYPES = build_type_table()


# ----------------------------------------------------------------------------- ours


def ours_read(msg) -> dict:
    """Read what the Gy handler needs from a decoded CCR."""
    mscc = []
    for g in msg.groups(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL):
        used = g.group(c.AVP_USED_SERVICE_UNIT)
        mscc.append(
            (
                g.get(c.AVP_RATING_GROUP),
                g.group(c.AVP_REQUESTED_SERVICE_UNIT) is not None,
                used.get(c.AVP_CC_TOTAL_OCTETS),
                used.get(c.AVP_CC_INPUT_OCTETS),
                used.get(c.AVP_CC_OUTPUT_OCTETS),
                used.get(c.AVP_TGPP_3GPP_REPORTING_REASON, TGPP),
            )
        )
    ps = msg.group(c.AVP_TGPP_SERVICE_INFORMATION, TGPP).group(c.AVP_TGPP_PS_INFORMATION, TGPP)
    return {
        "session_id": msg.get(c.AVP_SESSION_ID),
        "origin_host": msg.get(c.AVP_ORIGIN_HOST),
        "request_type": msg.get(c.AVP_CC_REQUEST_TYPE),
        "request_number": msg.get(c.AVP_CC_REQUEST_NUMBER),
        "service_context": msg.get(c.AVP_SERVICE_CONTEXT_ID),
        "event_time": msg.get(c.AVP_EVENT_TIMESTAMP),
        "subscriptions": [
            (s.get(c.AVP_SUBSCRIPTION_ID_TYPE), s.get(c.AVP_SUBSCRIPTION_ID_DATA))
            for s in msg.groups(c.AVP_SUBSCRIPTION_ID)
        ],
        "mscc": mscc,
        "sgsn_mcc_mnc": ps.get(c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP),
        "apn": ps.get(c.AVP_CALLED_STATION_ID),
    }


def ours_cca(req, facts: dict) -> bytes:
    avps = [
        (c.AVP_SESSION_ID, facts["session_id"]),
        (c.AVP_RESULT_CODE, 2001),
        (c.AVP_ORIGIN_HOST, "ocs1.operator.net"),
        (c.AVP_ORIGIN_REALM, "operator.net"),
        (c.AVP_AUTH_APPLICATION_ID, 4),
        (c.AVP_CC_REQUEST_TYPE, facts["request_type"]),
        (c.AVP_CC_REQUEST_NUMBER, facts["request_number"]),
    ]
    for rating_group, *_ in facts["mscc"]:
        avps.append(
            (
                c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
                [
                    (c.AVP_GRANTED_SERVICE_UNIT, [(c.AVP_CC_TOTAL_OCTETS, 10_000_000)]),
                    (c.AVP_RATING_GROUP, rating_group),
                    (c.AVP_VALIDITY_TIME, 3600),
                    (c.AVP_RESULT_CODE, 2001),
                    (c.AVP_TGPP_VOLUME_QUOTA_THRESHOLD, TGPP, 1_000_000),
                ],
            )
        )
    header = req.header
    return codec.encode_message(
        header.flags & 0x40, 272, 4, header.hop_by_hop, header.end_to_end, avps, TYPES
    )


def ours_round(ccr: bytes) -> bytes:
    msg = codec.decode_message(ccr, TYPES)
    return ours_cca(msg, ours_read(msg))


# ----------------------------------------------------------------------------- python-diameter


def pd_read(msg) -> dict:
    mscc = []
    for m in msg.multiple_services_credit_control:
        used = m.used_service_unit[0]
        mscc.append(
            (
                m.rating_group,
                m.requested_service_unit is not None,
                used.cc_total_octets,
                used.cc_input_octets,
                used.cc_output_octets,
                used.reporting_reason,
            )
        )
    ps = msg.service_information.ps_information
    return {
        "session_id": msg.session_id,
        "origin_host": msg.origin_host.decode(),
        "request_type": msg.cc_request_type,
        "request_number": msg.cc_request_number,
        "service_context": msg.service_context_id,
        "event_time": int(msg.event_timestamp.timestamp()),
        "subscriptions": [
            (s.subscription_id_type, s.subscription_id_data) for s in msg.subscription_id
        ],
        "mscc": mscc,
        "sgsn_mcc_mnc": ps.tgpp_sgsn_mcc_mnc,
        "apn": ps.called_station_id,
    }


def pd_cca(req, facts: dict) -> bytes:
    cca = req.to_answer()
    cca.session_id = facts["session_id"]
    cca.result_code = 2001
    cca.origin_host = b"ocs1.operator.net"
    cca.origin_realm = b"operator.net"
    cca.auth_application_id = 4
    cca.cc_request_type = facts["request_type"]
    cca.cc_request_number = facts["request_number"]
    for rating_group, *_ in facts["mscc"]:
        cca.multiple_services_credit_control.append(
            MultipleServicesCreditControl(
                granted_service_unit=GrantedServiceUnit(cc_total_octets=10_000_000),
                rating_group=rating_group,
                validity_time=3600,
                result_code=2001,
                volume_quota_threshold=1_000_000,
            )
        )
    return cca.as_bytes()


def pd_round(ccr: bytes) -> bytes:
    msg = Message.from_bytes(ccr)
    return pd_cca(msg, pd_read(msg))


# ----------------------------------------------------------------------------- benchmarks


@pytest.mark.benchmark(group="codec: CCR-U decode + read + CCA encode")
def test_bench_ours(benchmark):
    assert benchmark(ours_round, CCR)


@pytest.mark.benchmark(group="codec: CCR-U decode + read + CCA encode")
def test_bench_python_diameter(benchmark):
    assert benchmark(pd_round, CCR)


@pytest.mark.benchmark(group="codec: CCR-U decode + read")
def test_bench_ours_decode(benchmark):
    benchmark(lambda: ours_read(codec.decode_message(CCR, TYPES)))


@pytest.mark.benchmark(group="codec: CCR-U decode + read")
def test_bench_python_diameter_decode(benchmark):
    benchmark(lambda: pd_read(Message.from_bytes(CCR)))


@pytest.mark.benchmark(group="codec: CCA encode")
def test_bench_ours_encode(benchmark):
    msg = codec.decode_message(CCR, TYPES)
    facts = ours_read(msg)
    benchmark(ours_cca, msg, facts)


@pytest.mark.benchmark(group="codec: CCA encode")
def test_bench_python_diameter_encode(benchmark):
    msg = Message.from_bytes(CCR)
    facts = pd_read(msg)
    benchmark(pd_cca, msg, facts)


# ----------------------------------------------------------------------------- same work


def test_both_sides_do_the_same_work():
    """The benchmark compares like with like: same values read, equivalent CCAs."""
    ours_facts = ours_read(codec.decode_message(CCR, TYPES))
    pd_facts = pd_read(Message.from_bytes(CCR))
    assert ours_facts == pd_facts
    assert ours_facts["mscc"][1] == (20, True, 123_456, 30_864, 92_592, 3)
    assert len(ours_facts["subscriptions"]) == 2

    ours_answer = ours_round(CCR)
    pd_answer = pd_round(CCR)
    # Each side's CCA decodes on the other side to the same MSCC content.
    for answer in (ours_answer, pd_answer):
        theirs = Message.from_bytes(answer)
        mine = codec.decode_message(answer, TYPES)
        assert theirs.session_id == mine.get(c.AVP_SESSION_ID) == SESSION_ID
        assert [
            (m.rating_group, m.granted_service_unit.cc_total_octets, m.volume_quota_threshold)
            for m in theirs.multiple_services_credit_control
        ] == [
            (
                g.get(c.AVP_RATING_GROUP),
                g.group(c.AVP_GRANTED_SERVICE_UNIT).get(c.AVP_CC_TOTAL_OCTETS),
                g.get(c.AVP_TGPP_VOLUME_QUOTA_THRESHOLD, TGPP),
            )
            for g in mine.groups(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL)
        ]
