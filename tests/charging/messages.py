"""Credit-Control messages built with python-diameter, the independent reference.

Shared by the Gy unit tests (tests/ocs/test_gy_*.py) and the end-to-end charging
tests: what python-diameter encodes, our codec must read, and what we answer,
python-diameter must decode.
"""

from __future__ import annotations

import datetime
import itertools

from diameter.message import Message
from diameter.message.avp.grouped import (
    ImsInformation,
    MultipleServicesCreditControl,
    PsInformation,
    RecipientAddress,
    RecipientInfo,
    RequestedServiceUnit,
    ServiceInformation,
    SmsInformation,
    SubscriptionId,
    UsedServiceUnit,
)
from diameter.message.commands import CreditControlAnswer, CreditControlRequest
from diameter.message.constants import (
    APP_DIAMETER_CREDIT_CONTROL_APPLICATION,
    AVP_FAILED_AVP,
    E_ADDRESS_TYPE_MSISDN,
    E_CC_REQUEST_TYPE_EVENT_REQUEST,
    E_CC_REQUEST_TYPE_INITIAL_REQUEST,
    E_CC_REQUEST_TYPE_TERMINATION_REQUEST,
    E_CC_REQUEST_TYPE_UPDATE_REQUEST,
    E_SUBSCRIPTION_ID_TYPE_END_USER_E164,
    E_SUBSCRIPTION_ID_TYPE_END_USER_IMSI,
    E_SUBSCRIPTION_ID_TYPE_END_USER_NAI,
    E_SUBSCRIPTION_ID_TYPE_END_USER_PRIVATE,
    E_SUBSCRIPTION_ID_TYPE_END_USER_SIP_URI,
    SERVICE_CONTEXT_IMS_CHARGING,
    SERVICE_CONTEXT_PS_CHARGING,
    SERVICE_CONTEXT_SMS_SERVICE_CHARGING,
)

DATA = SERVICE_CONTEXT_PS_CHARGING
VOICE = SERVICE_CONTEXT_IMS_CHARGING
SMS = SERVICE_CONTEXT_SMS_SERVICE_CHARGING

INITIAL = E_CC_REQUEST_TYPE_INITIAL_REQUEST
UPDATE = E_CC_REQUEST_TYPE_UPDATE_REQUEST
TERMINATE = E_CC_REQUEST_TYPE_TERMINATION_REQUEST
EVENT = E_CC_REQUEST_TYPE_EVENT_REQUEST

SUBSCRIPTION_TYPES = {
    "msisdn": E_SUBSCRIPTION_ID_TYPE_END_USER_E164,
    "imsi": E_SUBSCRIPTION_ID_TYPE_END_USER_IMSI,
    "sip": E_SUBSCRIPTION_ID_TYPE_END_USER_SIP_URI,
    "nai": E_SUBSCRIPTION_ID_TYPE_END_USER_NAI,
    "private": E_SUBSCRIPTION_ID_TYPE_END_USER_PRIVATE,
}

MIB = 1_048_576

_ids = itertools.count(50_000)


def next_id() -> int:
    return next(_ids)


def units(
    cls, octets=None, seconds=None, events=None, input_octets=None, output_octets=None, reason=None
):
    """A Requested-/Used-Service-Unit of class ``cls`` with the given amounts."""
    value = cls()
    value.cc_total_octets = octets
    value.cc_time = seconds
    value.cc_service_specific_units = events
    if input_octets is not None:
        value.cc_input_octets = input_octets
    if output_octets is not None:
        value.cc_output_octets = output_octets
    if reason is not None:
        value.reporting_reason = reason
    return value


def rsu(**amounts) -> RequestedServiceUnit:
    """Requested-Service-Unit; ``rsu()`` is the empty one (the server decides)."""
    return units(RequestedServiceUnit, **amounts)


def usu(**amounts) -> UsedServiceUnit:
    return units(UsedServiceUnit, **amounts)


def mscc(
    rating_group: int | None = None,
    *,
    service_identifier: int | None = None,
    requested: RequestedServiceUnit | None = None,
    used: list[UsedServiceUnit] | tuple = (),
    reporting_reason: int | None = None,
) -> MultipleServicesCreditControl:
    value = MultipleServicesCreditControl()
    value.rating_group = rating_group
    if service_identifier is not None:
        value.service_identifier = [service_identifier]
    value.requested_service_unit = requested
    value.used_service_unit = list(used)
    if reporting_reason is not None:
        value.reporting_reason = [reporting_reason]
    return value


def ccr(
    session_id: str = "pgw.test.net;1;1",
    request_type: int = INITIAL,
    number: int = 0,
    *,
    origin_host: str = "pgw.test.net",
    context: str = DATA,
    subscriptions: tuple = (("msisdn", "491700000001"),),
    services: list[MultipleServicesCreditControl] | tuple = (),
    requested: RequestedServiceUnit | None = None,
    used: list[UsedServiceUnit] | tuple = (),
    multiple_services: int | None = None,
    timestamp: datetime.datetime | None = None,
    action: int | None = None,
    user_name: str | None = None,
    termination_cause: int | None = None,
    service_information: ServiceInformation | None = None,
    hop_by_hop: int | None = None,
) -> CreditControlRequest:
    message = CreditControlRequest()
    message.header.application_id = APP_DIAMETER_CREDIT_CONTROL_APPLICATION
    message.header.hop_by_hop_identifier = next_id() if hop_by_hop is None else hop_by_hop
    message.header.end_to_end_identifier = next_id()
    message.session_id = session_id
    message.origin_host = origin_host.encode()
    message.origin_realm = b"test.net"
    message.destination_realm = b"ocs.test"
    message.auth_application_id = APP_DIAMETER_CREDIT_CONTROL_APPLICATION
    message.service_context_id = context
    message.cc_request_type = request_type
    message.cc_request_number = number
    if subscriptions:
        message.subscription_id = [
            SubscriptionId(SUBSCRIPTION_TYPES[kind], value) for kind, value in subscriptions
        ]
    if user_name is not None:
        message.user_name = user_name
    if timestamp is not None:
        message.event_timestamp = timestamp
    if action is not None:
        message.requested_action = action
    if termination_cause is not None:
        message.termination_cause = termination_cause
    if multiple_services is None and services:
        multiple_services = 1
    if multiple_services is not None:
        message.multiple_services_indicator = multiple_services
    if services:
        message.multiple_services_credit_control = list(services)
    if requested is not None:
        message.requested_service_unit = requested
    if used:
        message.used_service_unit = list(used)
    if service_information is not None:
        message.service_information = service_information
    return message


def ps_information(visited: str | None = None, apn: str | None = None) -> ServiceInformation:
    ps = PsInformation()
    ps.tgpp_sgsn_mcc_mnc = visited
    ps.called_station_id = apn
    return ServiceInformation(ps_information=ps)


def ims_information(called: str) -> ServiceInformation:
    ims = ImsInformation()
    ims.called_party_address = called
    return ServiceInformation(ims_information=ims)


def sms_information(recipient: str) -> ServiceInformation:
    address = RecipientAddress()
    address.address_type = E_ADDRESS_TYPE_MSISDN
    address.address_data = recipient
    info = RecipientInfo()
    info.recipient_address = [address]
    sms = SmsInformation()
    sms.recipient_info = [info]
    return ServiceInformation(sms_information=sms)


def answer_of(data: bytes) -> CreditControlAnswer:
    message = Message.from_bytes(data)
    assert isinstance(message, CreditControlAnswer), type(message)
    return message


def failed_avps(answer: Message) -> list:
    """The AVPs inside the answer's Failed-AVP (python-diameter decodes them)."""
    failed = [a for a in answer.avps if a.code == AVP_FAILED_AVP]
    assert len(failed) == 1, answer.avps
    return failed[0].value


def mscc_by_group(answer: CreditControlAnswer) -> dict:
    return {m.rating_group: m for m in answer.multiple_services_credit_control}
