"""protocol.dictionary: python-diameter's dictionary as our codec's type table."""

from __future__ import annotations

import pytest
from diameter.message.avp.dictionary import AVP_DICTIONARY, AVP_VENDOR_DICTIONARY

from cext import codec
from protocol import dictionary
from protocol.dictionary import avp_name, avp_type_name, build_type_table
from protocol.dictionary import constants as c

TGPP = 10415


def test_table_is_built_once():
    assert build_type_table() is build_type_table()
    assert isinstance(build_type_table(), codec.TypeTable)


def test_every_python_diameter_avp_is_in_the_table():
    keys = {(code, 0) for code in AVP_DICTIONARY}
    keys |= {(code, v) for v, avps in AVP_VENDOR_DICTIONARY.items() for code in avps}
    table = build_type_table()
    assert len(table) == len(keys) > 2500
    assert all(key in table for key in keys)


@pytest.mark.parametrize(
    ("code", "vendor", "type_code"),
    [
        (c.AVP_SESSION_ID, 0, codec.UTF8STRING),
        (c.AVP_ORIGIN_HOST, 0, codec.DIAMETER_IDENTITY),  # OctetString in python-diameter
        (c.AVP_ORIGIN_REALM, 0, codec.DIAMETER_IDENTITY),
        (c.AVP_DESTINATION_HOST, 0, codec.DIAMETER_IDENTITY),
        (c.AVP_DESTINATION_REALM, 0, codec.DIAMETER_IDENTITY),
        (c.AVP_ROUTE_RECORD, 0, codec.DIAMETER_IDENTITY),
        (c.AVP_PROXY_HOST, 0, codec.DIAMETER_IDENTITY),
        (c.AVP_ERROR_REPORTING_HOST, 0, codec.DIAMETER_IDENTITY),
        (c.AVP_REDIRECT_HOST, 0, codec.DIAMETER_URI),  # UTF8String in python-diameter
        (c.AVP_CC_TOTAL_OCTETS, 0, codec.UNSIGNED64),
        (c.AVP_RATING_GROUP, 0, codec.UNSIGNED32),
        (c.AVP_CC_REQUEST_TYPE, 0, codec.INTEGER32),  # Enumerated: an Integer32 alias there
        (c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, 0, codec.GROUPED),
        (c.AVP_EVENT_TIMESTAMP, 0, codec.TIME),
        (c.AVP_HOST_IP_ADDRESS, 0, codec.ADDRESS),
        (c.AVP_VALUE_DIGITS, 0, codec.INTEGER64),
        (c.AVP_TOKEN_RATE, 0, codec.FLOAT32),
        (c.AVP_CLASS, 0, codec.OCTET_STRING),
        (c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP, codec.UTF8STRING),
        (c.AVP_TGPP_3GPP_REPORTING_REASON, TGPP, codec.INTEGER32),
        (c.AVP_TGPP_VOLUME_QUOTA_THRESHOLD, TGPP, codec.UNSIGNED32),
        (c.AVP_TGPP_SERVICE_INFORMATION, TGPP, codec.GROUPED),
        (c.AVP_TGPP_PDP_ADDRESS, TGPP, codec.ADDRESS),
    ],
)
def test_types(code, vendor, type_code):
    assert build_type_table().type_of(code, vendor) == type_code


def test_vendor_avps_need_their_vendor():
    table = build_type_table()
    assert table.type_of(c.AVP_TGPP_3GPP_REPORTING_REASON, TGPP) == codec.INTEGER32
    assert table.type_of(c.AVP_TGPP_VOLUME_QUOTA_THRESHOLD, 0) == 0


def test_default_flags_follow_the_mandatory_mark():
    table = build_type_table()
    assert table.default_flags(c.AVP_SESSION_ID) == codec.AVP_FLAG_MANDATORY
    assert table.default_flags(c.AVP_TGPP_VOLUME_QUOTA_THRESHOLD, TGPP) == 0x40
    assert AVP_DICTIONARY[c.AVP_ACCT_STATUS_TYPE].get("mandatory") is None
    assert table.default_flags(c.AVP_ACCT_STATUS_TYPE) == 0
    assert AVP_VENDOR_DICTIONARY[TGPP][c.AVP_TGPP_PDP_ADDRESS].get("mandatory") is None
    assert table.default_flags(c.AVP_TGPP_PDP_ADDRESS, TGPP) == 0


def test_names():
    assert avp_name(c.AVP_SESSION_ID) == "Session-Id"
    assert avp_name(c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP) == "3GPP-SGSN-MCC-MNC"
    assert avp_name(99999) == "AVP-99999"
    assert avp_name(1, 12345) == "AVP-1-vendor-12345"
    assert avp_type_name(c.AVP_ORIGIN_HOST) == "DiameterIdentity"
    assert avp_type_name(c.AVP_CC_TOTAL_OCTETS) == "Unsigned64"
    assert avp_type_name(99999) == "Unknown"


def test_constants_are_python_diameters():
    assert dictionary.constants.AVP_SESSION_ID == 263
    assert c.E_RESULT_CODE_DIAMETER_INVALID_AVP_LENGTH == 5014
