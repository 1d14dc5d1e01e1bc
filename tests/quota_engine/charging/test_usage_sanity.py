"""Usage sanity (issue 9, item 5): a report is committed up to ``usage_cap_factor`` (2)
times the grant it was made against (or the unit's default grant, 10 MiB, if that is
more) and never beyond its unit's cap; the record says
what was reported (``capped_from``), the observer counts it and a WARNING is logged.
Demo catalog: data at 1 EUR per MiB, in MiB blocks."""

from __future__ import annotations

import logging

import pytest

from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.observer import NoObserver
from quota_engine.model import ChargingRequest, Outcome, ServiceUsage
from quota_engine.store.records import read_records
from tests.quota_engine.conftest import (
    EUR,
    INITIAL,
    MIB,
    MSISDN,
    TERMINATE,
    UPDATE,
    create_account,
    data_request,
    money,
)

EXACT = 2**53 - 1


class Counting(NoObserver):
    """Counts the capped reports; observes nothing else."""

    def __init__(self) -> None:
        self.capped = 0

    def capped_reports(self, reports: int) -> None:
        self.capped += reports


async def one(engine: ChargingEngine, request: ChargingRequest):
    [result] = await engine.charge([request])
    return result


async def test_a_2_63_report_after_the_grant_of_a_5_eur_account(engine, r):
    """Before issue 9 the report was counted as 2^40 octets: 1,048,571 EUR below zero.
    The 5 EUR buy a final grant of 5 MiB; the report is committed up to twice that."""
    await create_account(r, "a1", balance=5 * EUR, identities=(MSISDN,))
    [g] = (await one(engine, data_request("s1", INITIAL, 0))).services
    assert (g.granted, g.final_unit) == (5 * MIB, True)
    res = await one(engine, data_request("s1", TERMINATE, 1, used=2**63, requested=None))
    assert res.outcome is Outcome.OK and res.services[0].cost == 10 * EUR
    assert await money(r, "a1") == -5 * EUR
    [rec] = await read_records(r, "a1")
    assert rec["used"] == {"octets": 10 * MIB} and rec["charged"] == 10 * EUR
    assert rec["capped_from"] == EXACT  # the report, as far as Lua counts exactly


async def test_a_report_up_to_the_factor_is_committed_whole(engine, r):
    await create_account(r, "a1", balance=100 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0))  # 10 MiB
    res = await one(engine, data_request("s1", UPDATE, 1, used=20 * MIB))
    assert res.services[0].cost == 20 * EUR
    res = await one(engine, data_request("s1", TERMINATE, 2, used=20 * MIB + 1, requested=None))
    assert res.services[0].cost == 20 * EUR  # 20 MiB + 1 octet cut to 20 MiB
    [rec] = await read_records(r, "a1")
    assert rec["used"] == {"octets": 40 * MIB}
    assert rec["capped_from"] == 40 * MIB + 1
    assert await money(r, "a1") == 60 * EUR


async def test_a_small_grant_may_be_overrun_up_to_the_default_grant(engine, r):
    """A 1 MiB grant: twice that is 2 MiB, but the floor is the default grant (10 MiB)."""
    await create_account(r, "a1", balance=100 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0, requested=MIB))
    res = await one(engine, data_request("s1", UPDATE, 1, used=8 * MIB, requested=MIB))
    assert res.services[0].cost == 8 * EUR  # whole
    res = await one(engine, data_request("s1", TERMINATE, 2, used=11 * MIB, requested=None))
    assert res.services[0].cost == 10 * EUR  # cut to 10 MiB
    [rec] = await read_records(r, "a1")
    assert (rec["used"], rec["capped_from"]) == ({"octets": 18 * MIB}, 19 * MIB)


async def test_an_uncut_record_has_no_capped_from(engine, r):
    await create_account(r, "a1", balance=100 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0))
    await one(engine, data_request("s1", TERMINATE, 1, used=20 * MIB, requested=None))
    [rec] = await read_records(r, "a1")
    assert rec["capped_from"] is None and rec["used"] == {"octets": 20 * MIB}


async def test_cut_reports_add_up_in_the_record_exactly(engine, r):
    await create_account(r, "a1", balance=100 * EUR, identities=(MSISDN,))
    ten = 10 * MIB
    await one(engine, data_request("s1", INITIAL, 0, requested=ten))
    await one(engine, data_request("s1", UPDATE, 1, used=2**53, requested=ten))
    await one(engine, data_request("s1", UPDATE, 2, used=30 * MIB, requested=ten))
    await one(engine, data_request("s1", TERMINATE, 3, used=2**64 - 1, requested=None))
    [rec] = await read_records(r, "a1")
    assert rec["used"] == {"octets": 60 * MIB} and rec["charged"] == 60 * EUR
    assert rec["capped_from"] == EXACT  # saturated, never an inexact double
    assert isinstance(rec["capped_from"], int)


class TestUnitCaps:
    @pytest.fixture
    def settings(self) -> EngineSettings:
        return EngineSettings(usage_cap_octets=5 * MIB, usage_cap_factor=1000)

    async def test_a_report_without_a_grant_is_cut_to_the_unit_cap(self, engine, r):
        """Usage of a rating group that never had a grant: only the unit's cap holds."""
        await create_account(r, "a1", balance=100 * EUR, identities=(MSISDN,))
        opening = data_request("s1", INITIAL, 0)
        opening.services = []  # a session opened before any rating group is active
        await one(engine, opening)
        request = data_request("s1", TERMINATE, 1, requested=None)
        request.services = [ServiceUsage(rating_group=10, used=7 * MIB)]
        assert (await one(engine, request)).services[0].cost == 5 * EUR
        [rec] = await read_records(r, "a1")
        assert (rec["used"], rec["capped_from"]) == ({"octets": 5 * MIB}, 7 * MIB)

    async def test_the_unit_cap_also_bounds_a_large_grant(self, engine, r):
        await create_account(r, "a1", balance=100 * EUR, identities=(MSISDN,))
        await one(engine, data_request("s1", INITIAL, 0, requested=4 * MIB))
        res = await one(engine, data_request("s1", TERMINATE, 1, used=6 * MIB, requested=None))
        assert res.services[0].cost == 5 * EUR


async def test_cut_reports_are_counted_and_logged_once(r, demo_pair, clock, caplog):
    observer = Counting()
    engine = ChargingEngine(r, lambda: demo_pair, clock=clock, observer=observer)
    await create_account(r, "a1", balance=100 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0))
    with caplog.at_level(logging.WARNING, logger="quota_engine.charging.engine"):
        first = await one(engine, data_request("s1", UPDATE, 1, used=100 * MIB))
        again = await one(engine, data_request("s1", UPDATE, 1, used=100 * MIB))
    assert first == again and first.services[0].cost == 20 * EUR
    assert observer.capped == 1  # the retransmission is not counted again
    [line] = [rec for rec in caplog.records if rec.getMessage().startswith("usage_capped")]
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert "account=** " in message and "reported=104857600" in message
    assert "committed=20971520" in message and "491700000001" not in message


def test_settings_bound_the_caps():
    with pytest.raises(ValueError, match="usage_cap_factor"):
        EngineSettings(usage_cap_factor=0)
    with pytest.raises(ValueError, match="usage_cap_octets"):
        EngineSettings(usage_cap_octets=2**40 + 1)
    assert EngineSettings().usage_cap("seconds") == 86_400
