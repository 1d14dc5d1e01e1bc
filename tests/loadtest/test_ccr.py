"""The generator's CCRs, read back by python-diameter (the independent oracle)."""

from __future__ import annotations

import random

from diameter.message import Message as PdMessage

from cext import codec
from loadtest.ccr import EVENT, INITIAL, TERMINATE, UPDATE, SessionFactory, granted_units
from loadtest.scenario import DEFAULT_SCENARIO, Range
from protocol.dictionary import build_type_table
from protocol.dictionary import constants as c

TYPES = build_type_table()


def factory(scenario=DEFAULT_SCENARIO, seed=7):
    return SessionFactory(scenario, [0, 1, 2], "ocs.test", "lt.test", "tag1", random.Random(seed))


def encode(avps) -> bytes:
    return codec.encode_message(0xC0, c.CMD_CREDIT_CONTROL, 4, 1, 2, avps, TYPES)


def answer(result_code=2001, grant=None, unit=c.AVP_CC_TOTAL_OCTETS):
    avps = [(c.AVP_SESSION_ID, "x"), (c.AVP_RESULT_CODE, result_code)]
    if grant is not None:
        avps.append(
            (
                c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
                [(c.AVP_GRANTED_SERVICE_UNIT, [(unit, grant)]), (c.AVP_RATING_GROUP, 10)],
            )
        )
    data = codec.encode_message(0x40, c.CMD_CREDIT_CONTROL, 4, 1, 2, avps, TYPES)
    return codec.decode_message(data, TYPES)


def test_data_session_walks_initial_updates_terminate_and_python_diameter_reads_it():
    f = factory()
    session = f.new_session("data", "pgw1.lt.test")
    session.updates_left = 2
    seen = []
    while not session.finished:
        msg = PdMessage.from_bytes(encode(session.next_request()))
        seen.append(msg.cc_request_type)
        assert msg.session_id == session.session_id
        assert msg.session_id.startswith("pgw1.lt.test;tag1;")
        assert msg.origin_host == b"pgw1.lt.test"
        assert msg.destination_realm == b"ocs.test"
        assert msg.service_context_id == "32251@3gpp.org"
        assert msg.cc_request_number == len(seen) - 1
        assert msg.subscription_id[0].subscription_id_data == session.subscriber.msisdn
        assert msg.multiple_services_indicator == 1
        mscc = msg.multiple_services_credit_control[0]
        assert mscc.rating_group == 10
        ps = msg.service_information.ps_information
        assert ps.tgpp_sgsn_mcc_mnc == "00101" and ps.called_station_id == "internet"
        if msg.cc_request_type == INITIAL:
            assert mscc.requested_service_unit is not None
            assert not getattr(mscc, "used_service_unit", None)
        else:
            used = mscc.used_service_unit[0].cc_total_octets
            assert 65_536 <= used <= 1_048_576
        if msg.cc_request_type == TERMINATE:
            assert msg.termination_cause == c.E_TERMINATION_CAUSE_DIAMETER_LOGOUT
            assert mscc.used_service_unit[0].reporting_reason == 2  # FINAL
        session.on_answer(answer(), 2001)
    assert seen == [INITIAL, UPDATE, UPDATE, TERMINATE]


def test_voice_carries_cc_time_and_the_called_party():
    session = factory().new_session("voice", "ims1.lt.test")
    session.on_answer(answer(), 2001)  # CCR-I answered
    msg = PdMessage.from_bytes(encode(session.next_request()))
    assert msg.service_context_id == "32260@3gpp.org"
    assert 20 <= msg.multiple_services_credit_control[0].used_service_unit[0].cc_time <= 60
    ims = msg.service_information.ims_information
    assert ims.called_party_address in DEFAULT_SCENARIO.voice.called_parties
    assert ims.role_of_node == 0 and ims.node_functionality == 6


def test_sms_is_one_direct_debiting_event_with_a_recipient():
    session = factory().new_session("sms", "smsc.lt.test")
    assert session.kind == "sms_event"
    msg = PdMessage.from_bytes(encode(session.next_request()))
    assert msg.cc_request_type == EVENT and msg.cc_request_number == 0
    assert msg.requested_action == c.E_REQUESTED_ACTION_DIRECT_DEBITING
    mscc = msg.multiple_services_credit_control[0]
    assert mscc.rating_group == 200
    assert mscc.requested_service_unit.cc_service_specific_units == 1
    address = msg.service_information.sms_information.recipient_info[0].recipient_address[0]
    assert address.address_type == c.E_ADDRESS_TYPE_MSISDN
    assert address.address_data in DEFAULT_SCENARIO.sms.recipients
    session.on_answer(answer(), 2001)
    assert session.finished


def test_usage_never_exceeds_the_last_grant():
    f = factory()
    session = f.new_session("data", "pgw1.lt.test")
    session.on_answer(answer(grant=1000), 2001)
    assert session.granted == 1000
    assert session.usage() == 1000  # the scenario's usage is 65536 or more
    assert granted_units(answer(), c.AVP_CC_TOTAL_OCTETS) is None


def test_a_failed_initial_ends_the_session_and_a_failed_update_terminates_it():
    f = factory()
    first = f.new_session("data", "pgw1.lt.test")
    first.on_answer(answer(4012), 4012)
    assert first.finished
    second = f.new_session("data", "pgw1.lt.test")
    second.updates_left = 3
    second.on_answer(answer(), 2001)
    assert second.request_type == UPDATE
    second.on_answer(answer(4012), 4012)
    assert second.request_type == TERMINATE and not second.finished
    third = f.new_session("voice", "pgw1.lt.test")
    third.on_answer(None, None)  # timeout on CCR-I
    assert third.finished


def test_drain_turns_the_next_update_into_a_terminate():
    scenario = DEFAULT_SCENARIO
    session = factory(scenario).new_session("data", "pgw1.lt.test")
    session.updates_left = 5
    session.on_answer(answer(), 2001)
    session.terminate_next()
    assert session.request_type == TERMINATE
    assert session.number == 1


def test_sessions_pick_subscribers_and_get_unique_ids():
    f = factory()
    sessions = [f.new_session("sms", "smsc.lt.test") for _ in range(50)]
    assert len({s.session_id for s in sessions}) == 50
    assert {s.subscriber.index for s in sessions} == {0, 1, 2}


def test_think_time_comes_from_the_scenario():
    from dataclasses import replace

    scenario = replace(
        DEFAULT_SCENARIO, data=replace(DEFAULT_SCENARIO.data, think_time=Range(0.25, 0.25))
    )
    assert factory(scenario).new_session("data", "h").think_time() == 0.25
