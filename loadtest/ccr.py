"""Credit-Control-Requests of the load generator, as AVP tuples for the Cython codec.

One :class:`SessionFactory` per worker builds sessions; a :class:`Session` yields its
requests one at a time (``next_request``) and learns from each answer
(``on_answer``). The AVPs follow 3GPP TS 32.299 as a P-GW (data), an IMS AS (voice)
and an SMSC (SMS) send them:

* data: CCR-I with an empty Requested-Service-Unit for the rating group, CCR-U with
  Used-Service-Unit (CC-Total-Octets) and a new RSU, CCR-T with the last usage;
  Service-Information / PS-Information with 3GPP-SGSN-MCC-MNC and the APN;
* voice: the same with CC-Time, and IMS-Information with Role-Of-Node (originating),
  Node-Functionality (AS) and Called-Party-Address;
* SMS: CCR-Event, Requested-Action DIRECT_DEBITING, RSU of one service-specific unit,
  SMS-Information / Recipient-Info / Recipient-Address (MSISDN).

Every request uses Multiple-Services-Indicator 1 and one Multiple-Services-Credit-
Control. A session never reports more usage than the last grant of its rating group
(when the answer carried a Granted-Service-Unit), as a real network element would not.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from cext.codec import Message
from protocol.dictionary import constants as c
from protocol.messages import AvpSpec

from .scenario import DataService, Scenario, SmsService, VoiceService

if TYPE_CHECKING:
    from protocol.connection import PeerConnection

ServiceSpec: TypeAlias = DataService | VoiceService | SmsService

TGPP = c.VENDOR_TGPP
CCR = c.CMD_CREDIT_CONTROL
CREDIT_CONTROL = c.APP_DIAMETER_CREDIT_CONTROL_APPLICATION
SUCCESS = c.E_RESULT_CODE_DIAMETER_SUCCESS

INITIAL = c.E_CC_REQUEST_TYPE_INITIAL_REQUEST
UPDATE = c.E_CC_REQUEST_TYPE_UPDATE_REQUEST
TERMINATE = c.E_CC_REQUEST_TYPE_TERMINATION_REQUEST
EVENT = c.E_CC_REQUEST_TYPE_EVENT_REQUEST

# Request kinds: the key of every statistic.
KINDS = (
    "data_initial",
    "data_update",
    "data_terminate",
    "voice_initial",
    "voice_update",
    "voice_terminate",
    "sms_event",
)
_STEP_NAMES = {INITIAL: "initial", UPDATE: "update", TERMINATE: "terminate", EVENT: "event"}


def kind_of(service: str, request_type: int) -> str:
    return f"{service}_{_STEP_NAMES.get(request_type, 'other')}"


@dataclass(slots=True)
class Subscriber:
    index: int
    msisdn: str
    subscription: AvpSpec  # the encoded-ready Subscription-Id AVP


class SessionFactory:
    """Builds the sessions of one worker (one per network element identity)."""

    def __init__(
        self,
        scenario: Scenario,
        subscribers: list[int],
        destination_realm: str,
        origin_realm: str,
        run_tag: str,
        rng: random.Random,
        nonce: str = "",
    ) -> None:
        self.scenario = scenario
        self.rng = rng
        self.destination_realm = destination_realm
        self.origin_realm = origin_realm
        self.run_tag = run_tag
        # Session-Ids must never repeat, not even across the runs of one --find-max
        # (same run tag, counters starting again): a CCR-I with a used Session-Id and
        # CC-Request-Number 0 is a retransmission to the OCS, answered from its cache.
        self.prefix = f"{nonce}-" if nonce else ""
        self._counter = 0
        subs = scenario.subscribers
        self.subscribers = [
            Subscriber(
                i,
                subs.msisdn(i),
                (
                    c.AVP_SUBSCRIPTION_ID,
                    [
                        (c.AVP_SUBSCRIPTION_ID_TYPE, c.E_SUBSCRIPTION_ID_TYPE_END_USER_E164),
                        (c.AVP_SUBSCRIPTION_ID_DATA, subs.msisdn(i)),
                    ],
                ),
            )
            for i in subscribers
        ]
        data, voice, sms = scenario.data, scenario.voice, scenario.sms
        ps: list[AvpSpec] = [(c.AVP_CALLED_STATION_ID, data.apn)] if data.apn else []
        if data.visited_mcc_mnc:
            ps.insert(0, (c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP, data.visited_mcc_mnc))
        self._data_info: list[AvpSpec] = (
            [(c.AVP_TGPP_SERVICE_INFORMATION, TGPP, [(c.AVP_TGPP_PS_INFORMATION, TGPP, ps)])]
            if ps
            else []
        )
        self._voice_infos: list[AvpSpec] = [
            (
                c.AVP_TGPP_SERVICE_INFORMATION,
                TGPP,
                [
                    (
                        c.AVP_TGPP_IMS_INFORMATION,
                        TGPP,
                        [
                            (c.AVP_TGPP_ROLE_OF_NODE, TGPP, c.E_ROLE_OF_NODE_ORIGINATING_ROLE),
                            (c.AVP_TGPP_NODE_FUNCTIONALITY, TGPP, c.E_NODE_FUNCTIONALITY_AS),
                            (c.AVP_TGPP_CALLED_PARTY_ADDRESS, TGPP, called),
                        ],
                    )
                ],
            )
            for called in voice.called_parties
        ]
        self._sms_infos: list[AvpSpec] = [
            (
                c.AVP_TGPP_SERVICE_INFORMATION,
                TGPP,
                [
                    (
                        c.AVP_TGPP_SMS_INFORMATION,
                        TGPP,
                        [
                            (
                                c.AVP_TGPP_RECIPIENT_INFO,
                                TGPP,
                                [
                                    (
                                        c.AVP_TGPP_RECIPIENT_ADDRESS,
                                        TGPP,
                                        [
                                            (
                                                c.AVP_TGPP_ADDRESS_TYPE,
                                                TGPP,
                                                c.E_ADDRESS_TYPE_MSISDN,
                                            ),
                                            (c.AVP_TGPP_ADDRESS_DATA, TGPP, recipient),
                                        ],
                                    )
                                ],
                            )
                        ],
                    )
                ],
            )
            for recipient in sms.recipients
        ]

    def new_session(self, service: str, origin_host: str) -> Session:
        self._counter += 1
        rng = self.rng
        spec: ServiceSpec
        info: list[AvpSpec]
        subscriber = self.subscribers[rng.randrange(len(self.subscribers))]
        session_id = f"{origin_host};{self.run_tag};{self.prefix}{self._counter}"
        if service == "data":
            spec = self.scenario.data
            info = self._data_info
            updates = spec.updates.draw_int(rng)
            unit = c.AVP_CC_TOTAL_OCTETS
        elif service == "voice":
            spec = self.scenario.voice
            info = [rng.choice(self._voice_infos)]
            updates = spec.updates.draw_int(rng)
            unit = c.AVP_CC_TIME
        else:
            spec = self.scenario.sms
            info = [rng.choice(self._sms_infos)]
            updates = -1  # an event: one request only
            unit = c.AVP_CC_SERVICE_SPECIFIC_UNITS
        return Session(
            self, service, spec, session_id, origin_host, subscriber, info, updates, unit
        )


class Session:
    """One credit-control session (or one SMS event) and where it stands."""

    __slots__ = (
        "factory",
        "service",
        "spec",
        "session_id",
        "origin_host",
        "subscriber",
        "info",
        "updates_left",
        "unit",
        "number",
        "request_type",
        "granted",
        "finished",
        "connection",
    )

    def __init__(
        self,
        factory: SessionFactory,
        service: str,
        spec: ServiceSpec,
        session_id: str,
        origin_host: str,
        subscriber: Subscriber,
        info: list[AvpSpec],
        updates: int,
        unit: int,
    ) -> None:
        self.factory = factory
        self.service = service
        self.spec = spec
        self.session_id = session_id
        self.origin_host = origin_host
        self.subscriber = subscriber
        self.info = info
        self.updates_left = updates
        self.unit = unit
        self.number = 0
        self.request_type = EVENT if updates < 0 else INITIAL
        self.granted: int | None = None
        self.finished = False
        self.connection: PeerConnection | None = None

    @property
    def kind(self) -> str:
        return kind_of(self.service, self.request_type)

    def next_request(self) -> list[AvpSpec]:
        """The AVPs of the session's next request (its CC-Request-Type is ``request_type``)."""
        factory = self.factory
        request_type = self.request_type
        spec = self.spec
        avps: list[AvpSpec] = [
            (c.AVP_SESSION_ID, self.session_id),
            (c.AVP_ORIGIN_HOST, self.origin_host),
            (c.AVP_ORIGIN_REALM, factory.origin_realm),
            (c.AVP_DESTINATION_REALM, factory.destination_realm),
            (c.AVP_AUTH_APPLICATION_ID, CREDIT_CONTROL),
            (c.AVP_SERVICE_CONTEXT_ID, spec.context),
            (c.AVP_CC_REQUEST_TYPE, request_type),
            (c.AVP_CC_REQUEST_NUMBER, self.number),
            (c.AVP_EVENT_TIMESTAMP, int(time.time())),
            self.subscriber.subscription,
        ]
        if request_type == EVENT:
            avps.append((c.AVP_REQUESTED_ACTION, c.E_REQUESTED_ACTION_DIRECT_DEBITING))
        avps.append((c.AVP_MULTIPLE_SERVICES_INDICATOR, 1))
        mscc: list[AvpSpec] = []
        if request_type == EVENT:
            mscc.append((c.AVP_REQUESTED_SERVICE_UNIT, [(self.unit, 1)]))
        else:
            if request_type != TERMINATE:
                mscc.append((c.AVP_REQUESTED_SERVICE_UNIT, []))
            if request_type != INITIAL:
                used = self.usage()
                usu: list[AvpSpec] = [(self.unit, used)]
                if request_type == TERMINATE:
                    usu.append(
                        (c.AVP_TGPP_3GPP_REPORTING_REASON, TGPP, c.E_3GPP_REPORTING_REASON_FINAL)
                    )
                mscc.append((c.AVP_USED_SERVICE_UNIT, usu))
        mscc.append((c.AVP_RATING_GROUP, spec.rating_group))
        avps.append((c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, mscc))
        if request_type == TERMINATE:
            avps.append((c.AVP_TERMINATION_CAUSE, c.E_TERMINATION_CAUSE_DIAMETER_LOGOUT))
        avps.extend(self.info)
        return avps

    def usage(self) -> int:
        spec = self.spec
        if isinstance(spec, SmsService):  # an event reports no usage
            return 0
        used = spec.usage.draw_int(self.factory.rng)
        granted = self.granted
        if granted is not None and used > granted:
            used = granted
        return used

    def on_answer(self, answer: Message | None, result_code: int | None) -> None:
        """Advance after the answer to the current request (None: no answer)."""
        request_type = self.request_type
        if request_type in (EVENT, TERMINATE):
            self.finished = True
            return
        if result_code != SUCCESS or answer is None:
            # A failed CCR-I opens nothing; after a failed CCR-U the session is closed.
            if request_type == INITIAL or answer is None:
                self.finished = True
                return
            self.number += 1
            self.request_type = TERMINATE
            return
        self.granted = granted_units(answer, self.unit)
        self.number += 1
        if self.updates_left > 0:
            self.updates_left -= 1
            self.request_type = UPDATE
        else:
            self.request_type = TERMINATE

    def terminate_next(self) -> None:
        """Make the next request a CCR-T (used when the run drains its sessions)."""
        if self.request_type == UPDATE:
            self.request_type = TERMINATE

    def think_time(self) -> float:
        spec = self.spec
        if isinstance(spec, SmsService):  # an event session ends with its one request
            return 0.0
        return spec.think_time.draw(self.factory.rng)


def granted_units(answer: Message, unit: int) -> int | None:
    """The units of ``unit`` granted by the answer's first MSCC, if any."""
    mscc = answer.group(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL)
    if mscc is None:
        return None
    gsu = mscc.group(c.AVP_GRANTED_SERVICE_UNIT)
    if gsu is None:
        return None
    return gsu.get(unit)
