"""A rate change inside a report, end to end over TCP (python-diameter as the IMS
node): the CCA that grants across the change carries Tariff-Time-Change in its
Granted-Service-Unit, and a late report pays each band its share. Demo catalog:
national calls 0.10 EUR/min on weekdays, 0.05 EUR/min at the weekend (from Friday
24:00 Berlin), per minute."""

from __future__ import annotations

import datetime
from typing import Any

from diameter.message import Message
from diameter.message.constants import (
    AVP_GRANTED_SERVICE_UNIT,
    AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
    AVP_TARIFF_TIME_CHANGE,
    E_TARIFF_CHANGE_USAGE_UNIT_AFTER_TARIFF_CHANGE,
    E_TARIFF_CHANGE_USAGE_UNIT_BEFORE_TARIFF_CHANGE,
)

from tests.charging import messages as m
from tests.charging.conftest import EUR

# Saturday 2025-03-08 00:00 Berlin (CET, UTC+1): weekday -> weekend
WEEKEND = datetime.datetime(2025, 3, 7, 23, 0, tzinfo=datetime.UTC)
MSISDN = "msisdn:491700000001"
SECOND = datetime.timedelta(seconds=1)


async def ccr(element: Any, sid: str, kind: int, number: int, **kw: Any) -> tuple[Any, bytes]:
    """The CCA, decoded and as it arrived."""
    data = await element.request_bytes(
        m.ccr(sid, kind, number, origin_host=element.origin_host, context=m.VOICE, **kw)
    )
    return m.answer_of(data), data


def tariff_time_change(data: bytes) -> datetime.datetime | None:
    """Tariff-Time-Change in the first MSCC's Granted-Service-Unit (python-diameter's
    GSU class does not name it: read from the plain message)."""
    message = Message.from_bytes(data, plain_msg=True)
    [mscc] = [a for a in message.avps if a.code == AVP_MULTIPLE_SERVICES_CREDIT_CONTROL]
    [gsu] = [a for a in mscc.value if a.code == AVP_GRANTED_SERVICE_UNIT]
    found = [a.value for a in gsu.value if a.code == AVP_TARIFF_TIME_CHANGE]
    return found[0] if found else None


async def late_call(ocs: Any, sid: str, *used: Any) -> int:
    """A national call granted at Friday 23:58 Berlin, its usage ``used`` (USUs)
    reported at 00:00:50 and the call ended at 00:01:50 with 60 s more; returns what
    it cost."""
    account = await ocs.account("caller", MSISDN)
    ims = await ocs.connect("scscf.test.net")
    info = m.ims_information("tel:+4930123456")
    start = WEEKEND - 120 * SECOND
    cca, data = await ccr(
        ims,
        sid,
        m.INITIAL,
        0,
        services=[m.mscc(100, requested=m.rsu())],
        service_information=info,
        timestamp=start,
    )
    assert cca.result_code == 2001
    [mscc] = cca.multiple_services_credit_control
    assert (mscc.granted_service_unit.cc_time, mscc.validity_time) == (300, 120)
    assert tariff_time_change(data) == WEEKEND.replace(tzinfo=None)
    cca, data = await ccr(
        ims,
        sid,
        m.UPDATE,
        1,
        services=[m.mscc(100, requested=m.rsu(), used=list(used))],
        timestamp=WEEKEND + 50 * SECOND,
    )
    assert cca.result_code == 2001
    # the grant made after the change holds no change within its validity
    assert tariff_time_change(data) is None
    cca, _ = await ccr(
        ims,
        sid,
        m.TERMINATE,
        2,
        services=[m.mscc(100, used=[m.usu(seconds=60)])],
        timestamp=WEEKEND + 110 * SECOND,
    )
    assert cca.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert bucket.reserved == 0
    return int(10 * EUR - bucket.amount)


async def test_a_late_report_is_split_by_the_clock_at_the_band_change(ocs: Any) -> None:
    # 170 s reported 50 s after midnight: 120 s weekday (2 min, 0.20 EUR) and 50 s
    # weekend, then 60 s weekend: 110 s = 2 weekend minutes (0.10 EUR). All at the
    # weekday price, 170 s would be 3 minutes (0.30 EUR) and the total 0.35 EUR.
    assert await late_call(ocs, "scscf.test.net;late;1", m.usu(seconds=170)) == 300_000


async def test_a_report_split_by_tariff_change_usage_pays_each_part_its_band(ocs: Any) -> None:
    before, after = m.usu(seconds=50), m.usu(seconds=120)
    before.tariff_change_usage = E_TARIFF_CHANGE_USAGE_UNIT_BEFORE_TARIFF_CHANGE
    after.tariff_change_usage = E_TARIFF_CHANGE_USAGE_UNIT_AFTER_TARIFF_CHANGE
    # 50 s weekday (1 min, 0.10 EUR); 120 + 60 = 180 s weekend (3 min, 0.15 EUR)
    assert await late_call(ocs, "scscf.test.net;late;2", before, after) == 250_000
