"""Tariff changes on the wire (RFC 8506 §8.17, §8.20, §8.27): Tariff-Change-Usage in
the Used-Service-Units of a CCR, Tariff-Time-Change in the Granted-Service-Unit of the
CCA; python-diameter (the independent reference) encodes the CCRs and decodes the
CCAs."""

from __future__ import annotations

import datetime
from typing import Any

from diameter.message import Message
from diameter.message.avp.grouped import UsedServiceUnit
from diameter.message.constants import (
    AVP_CC_TIME,
    AVP_GRANTED_SERVICE_UNIT,
    AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
    AVP_TARIFF_TIME_CHANGE,
    E_TARIFF_CHANGE_USAGE_UNIT_AFTER_TARIFF_CHANGE,
    E_TARIFF_CHANGE_USAGE_UNIT_BEFORE_TARIFF_CHANGE,
    E_TARIFF_CHANGE_USAGE_UNIT_INDETERMINATE,
)

from ocs.gy.translation import build_cca, parse_ccr
from protocol.messages import Codec, LocalIdentity
from quota_engine.model import ChargingResult, Outcome, ServiceGrant, ServiceUsage, Unit
from tests.charging import messages as m

CODEC = Codec(LocalIdentity("ocs.test.net", "test.net"))
NOW = 1_750_000_000
BEFORE = E_TARIFF_CHANGE_USAGE_UNIT_BEFORE_TARIFF_CHANGE
AFTER = E_TARIFF_CHANGE_USAGE_UNIT_AFTER_TARIFF_CHANGE
INDETERMINATE = E_TARIFF_CHANGE_USAGE_UNIT_INDETERMINATE


def tagged(change: int | None, **amounts: int) -> UsedServiceUnit:
    usu = m.usu(**amounts)
    usu.tariff_change_usage = change
    return usu


def service_of(message: Message) -> ServiceUsage:
    parsed = parse_ccr(CODEC, CODEC.decode(message.as_bytes()), NOW)
    [service] = parsed.request.services
    return service


def test_usus_tagged_before_and_after_the_change_are_told_apart() -> None:
    service = service_of(
        m.ccr(
            request_type=m.UPDATE,
            services=[
                m.mscc(
                    10,
                    used=[
                        tagged(BEFORE, octets=1500),
                        tagged(AFTER, octets=2000),
                        tagged(AFTER, octets=500),
                        tagged(INDETERMINATE, octets=7),
                        tagged(None, octets=3),
                    ],
                )
            ],
        )
    )
    assert service.used == 4010
    assert (service.used_before_change, service.used_after_change) == (1500, 2500)


def test_only_the_units_of_the_context_count_in_the_split() -> None:
    service = service_of(
        m.ccr(
            context=m.VOICE,
            request_type=m.UPDATE,
            services=[
                m.mscc(100, used=[tagged(BEFORE, seconds=40), tagged(AFTER, octets=999)]),
            ],
        )
    )
    assert (service.used, service.used_before_change, service.used_after_change) == (40, 40, 0)


def test_no_tag_and_indeterminate_make_no_split() -> None:
    service = service_of(
        m.ccr(
            request_type=m.UPDATE,
            services=[m.mscc(10, used=[tagged(INDETERMINATE, octets=5), m.usu(octets=6)])],
        )
    )
    assert (service.used, service.used_before_change, service.used_after_change) == (
        11,
        None,
        None,
    )


def test_single_service_mode_reads_the_tags_too() -> None:
    service = service_of(
        m.ccr(request_type=m.UPDATE, used=[tagged(BEFORE, octets=10), tagged(AFTER, octets=20)])
    )
    assert (service.used_before_change, service.used_after_change) == (10, 20)


def granted_service_units(data: bytes) -> list[list[Any]]:
    """The AVPs inside each MSCC's Granted-Service-Unit, as python-diameter reads them
    (its GSU class does not name Tariff-Time-Change, so the plain message's AVPs)."""
    message = Message.from_bytes(data, plain_msg=True)
    found = []
    for mscc in (a for a in message.avps if a.code == AVP_MULTIPLE_SERVICES_CREDIT_CONTROL):
        for gsu in (a for a in mscc.value if a.code == AVP_GRANTED_SERVICE_UNIT):
            found.append(gsu.value)
    return found


def test_the_cca_carries_tariff_time_change_in_the_granted_service_unit() -> None:
    change = 1_750_003_600
    request = m.ccr(context=m.VOICE, services=[m.mscc(100, requested=m.rsu())])
    decoded = CODEC.decode(request.as_bytes())
    parsed = parse_ccr(CODEC, decoded, NOW)
    result = ChargingResult(
        Outcome.OK,
        [
            ServiceGrant(
                100,
                None,
                Outcome.OK,
                unit=Unit.SECONDS,
                granted=300,
                validity_time=3600,
                tariff_time_change=change,
            )
        ],
    )
    data = CODEC.encode_answer(decoded.header, build_cca(parsed, result), request.session_id)
    [gsu] = granted_service_units(data)
    assert [a.code for a in gsu] == [AVP_TARIFF_TIME_CHANGE, AVP_CC_TIME]
    assert gsu[0].value == datetime.datetime.fromtimestamp(change, datetime.UTC).replace(
        tzinfo=None
    )
    assert gsu[1].value == 300
    # without a change inside the grant: no Tariff-Time-Change
    result.services[0].tariff_time_change = None
    data = CODEC.encode_answer(decoded.header, build_cca(parsed, result), request.session_id)
    [gsu] = granted_service_units(data)
    assert [a.code for a in gsu] == [AVP_CC_TIME]
