"""What the Credit-Control-Request grammar allows only once (RFC 8506 §3.1, TS 32.299).

RFC 6733 §3.2: an AVP written ``< AVP >``, ``{ AVP }`` or ``[ AVP ]`` (no ``*``) occurs at
most once; a request that repeats one is answered DIAMETER_AVP_OCCURS_TOO_MANY_TIMES
(5009) with the second occurrence as Failed-AVP (RFC 6733 §7.1.5). The rules below are
checked in one C pass over the message (``cext.codec.Message.first_repeated``), at the
message level and inside each Grouped AVP listed, wherever that Grouped AVP appears.

The Grouped AVPs listed are the ones the OCS reads: Subscription-Id,
Multiple-Services-Credit-Control, Requested-/Used-Service-Unit (RFC 8506 §8.16-8.19),
Service-Information and its PS-, IMS- and SMS-Information (TS 32.299 §7.2). AVPs that
the grammar lets repeat (``*[ ... ]``: Subscription-Id, Used-Service-Unit, MSCC,
Service-Identifier inside an MSCC, 3GPP-Reporting-Reason, Proxy-Info, ...) and AVPs
of the grammar's ``*[ AVP ]`` are not constrained.
"""

from __future__ import annotations

from cext.codec import OccurrenceRules
from protocol.dictionary import constants as c

TGPP = c.VENDOR_TGPP

# RFC 8506 §3.1 (with TS 32.299 §6.4.2's additions, vendor 10415): every AVP of the
# Credit-Control-Request that is not ``*[ ... ]``.
CCR_SINGLE = (
    (c.AVP_SESSION_ID, 0),
    (c.AVP_DRMP, 0),
    (c.AVP_ORIGIN_HOST, 0),
    (c.AVP_ORIGIN_REALM, 0),
    (c.AVP_DESTINATION_REALM, 0),
    (c.AVP_AUTH_APPLICATION_ID, 0),
    (c.AVP_SERVICE_CONTEXT_ID, 0),
    (c.AVP_CC_REQUEST_TYPE, 0),
    (c.AVP_CC_REQUEST_NUMBER, 0),
    (c.AVP_DESTINATION_HOST, 0),
    (c.AVP_USER_NAME, 0),
    (c.AVP_CC_SUB_SESSION_ID, 0),
    (c.AVP_ACCOUNTING_MULTI_SESSION_ID, 0),
    (c.AVP_ORIGIN_STATE_ID, 0),
    (c.AVP_EVENT_TIMESTAMP, 0),
    (c.AVP_SERVICE_IDENTIFIER, 0),
    (c.AVP_TERMINATION_CAUSE, 0),
    (c.AVP_REQUESTED_SERVICE_UNIT, 0),
    (c.AVP_REQUESTED_ACTION, 0),
    (c.AVP_MULTIPLE_SERVICES_INDICATOR, 0),
    (c.AVP_CC_CORRELATION_ID, 0),
    (c.AVP_USER_EQUIPMENT_INFO, 0),
    (c.AVP_USER_EQUIPMENT_INFO_EXTENSION, 0),
    (c.AVP_TGPP_AOC_REQUEST_TYPE, TGPP),
    (c.AVP_TGPP_SERVICE_INFORMATION, TGPP),
)

# RFC 8506 §8.46: Subscription-Id ::= { Subscription-Id-Type } { Subscription-Id-Data }
SUBSCRIPTION_ID_SINGLE = ((c.AVP_SUBSCRIPTION_ID_TYPE, 0), (c.AVP_SUBSCRIPTION_ID_DATA, 0))

# RFC 8506 §8.16 and TS 32.299 §7.1.9: the MSCC's single AVPs (Service-Identifier,
# Used-Service-Unit and 3GPP's Reporting-Reason may repeat).
MSCC_SINGLE = (
    (c.AVP_GRANTED_SERVICE_UNIT, 0),
    (c.AVP_REQUESTED_SERVICE_UNIT, 0),
    (c.AVP_TARIFF_CHANGE_USAGE, 0),
    (c.AVP_RATING_GROUP, 0),
    (c.AVP_VALIDITY_TIME, 0),
    (c.AVP_RESULT_CODE, 0),
    (c.AVP_FINAL_UNIT_INDICATION, 0),
)

# RFC 8506 §8.18: Requested-Service-Unit; §8.19: Used-Service-Unit adds
# Tariff-Change-Usage.
REQUESTED_UNITS_SINGLE = (
    (c.AVP_CC_TIME, 0),
    (c.AVP_CC_MONEY, 0),
    (c.AVP_CC_TOTAL_OCTETS, 0),
    (c.AVP_CC_INPUT_OCTETS, 0),
    (c.AVP_CC_OUTPUT_OCTETS, 0),
    (c.AVP_CC_SERVICE_SPECIFIC_UNITS, 0),
)
USED_UNITS_SINGLE = ((c.AVP_TARIFF_CHANGE_USAGE, 0), *REQUESTED_UNITS_SINGLE)

# TS 32.299 §7.2.192: Service-Information holds each kind of information once.
SERVICE_INFORMATION_SINGLE = (
    (c.AVP_TGPP_PS_INFORMATION, TGPP),
    (c.AVP_TGPP_IMS_INFORMATION, TGPP),
    (c.AVP_TGPP_SMS_INFORMATION, TGPP),
)

# TS 32.299 §7.2.158 (PS-Information) and §7.2.77 (IMS-Information): the AVPs read.
PS_INFORMATION_SINGLE = ((c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP), (c.AVP_CALLED_STATION_ID, 0))
IMS_INFORMATION_SINGLE = ((c.AVP_TGPP_CALLED_PARTY_ADDRESS, TGPP),)

CCR_OCCURRENCES = OccurrenceRules(
    {
        None: CCR_SINGLE,
        (c.AVP_SUBSCRIPTION_ID, 0): SUBSCRIPTION_ID_SINGLE,
        (c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, 0): MSCC_SINGLE,
        (c.AVP_REQUESTED_SERVICE_UNIT, 0): REQUESTED_UNITS_SINGLE,
        (c.AVP_USED_SERVICE_UNIT, 0): USED_UNITS_SINGLE,
        (c.AVP_TGPP_SERVICE_INFORMATION, TGPP): SERVICE_INFORMATION_SINGLE,
        (c.AVP_TGPP_PS_INFORMATION, TGPP): PS_INFORMATION_SINGLE,
        (c.AVP_TGPP_IMS_INFORMATION, TGPP): IMS_INFORMATION_SINGLE,
    }
)
"""The CCR's single-occurrence rules, for ``protocol.messages.check_occurrences``."""
