"""Base protocol commands (RFC 6733 §5): CER/CEA, DWR/DWA, DPR/DPA.

These are handled below the application: the transport calls :func:`check_cer` when
a CER arrives and uses the builders here for every base message it sends. Nothing in
this module touches a socket.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cext.codec import Header, Message

from .dictionary import constants as c
from .errors import NO_COMMON_APPLICATION, SUCCESS, UNKNOWN_PEER, DiameterError
from .messages import Answer, AvpSpec, Codec, LocalIdentity, check_mandatory

CER = c.CMD_CAPABILITIES_EXCHANGE
DWR = c.CMD_DEVICE_WATCHDOG
DPR = c.CMD_DISCONNECT_PEER
BASE_COMMANDS = frozenset({CER, DWR, DPR})
RELAY_APPLICATION = c.APP_RELAY
TGPP_VENDOR = c.VENDOR_TGPP

REBOOTING = c.E_DISCONNECT_CAUSE_REBOOTING
BUSY = c.E_DISCONNECT_CAUSE_BUSY
DO_NOT_WANT_TO_TALK_TO_YOU = c.E_DISCONNECT_CAUSE_DO_NOT_WANT_TO_TALK_TO_YOU

_CER_MANDATORY = (
    (c.AVP_ORIGIN_HOST, 0),
    (c.AVP_ORIGIN_REALM, 0),
    (c.AVP_HOST_IP_ADDRESS, 0),
    (c.AVP_VENDOR_ID, 0),
    (c.AVP_PRODUCT_NAME, 0),
)


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """Which peers may connect and which applications we offer them.

    Empty ``allowed_hosts`` or ``allowed_networks`` means no restriction on that axis.
    """

    application_ids: frozenset[int]
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def build(
        cls,
        application_ids: Iterable[int],
        allowed_hosts: Iterable[str] = (),
        allowed_networks: Iterable[str] = (),
    ) -> PeerPolicy:
        return cls(
            frozenset(application_ids),
            frozenset(h.lower() for h in allowed_hosts),
            tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks),
        )

    def host_allowed(self, origin_host: str) -> bool:
        return not self.allowed_hosts or origin_host.lower() in self.allowed_hosts

    def address_allowed(self, address: str) -> bool:
        if not self.allowed_networks:
            return True
        ip = ipaddress.ip_address(address)
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allowed_networks)


@dataclass(frozen=True, slots=True)
class PeerCapabilities:
    """What an accepted CER told us about the peer."""

    origin_host: str
    origin_realm: str
    application_ids: frozenset[int]


def _advertised_applications(cer: Message) -> set[int]:
    apps = set(cer.get_all(c.AVP_AUTH_APPLICATION_ID))
    apps.update(cer.get_all(c.AVP_ACCT_APPLICATION_ID))
    for vsai in cer.groups(c.AVP_VENDOR_SPECIFIC_APPLICATION_ID):
        apps.update(vsai.get_all(c.AVP_AUTH_APPLICATION_ID))
        apps.update(vsai.get_all(c.AVP_ACCT_APPLICATION_ID))
    return apps


def check_cer(
    codec: Codec, cer: Message, peer_address: str, policy: PeerPolicy
) -> PeerCapabilities:
    """Accept a CER or raise the error its CEA must carry (RFC 6733 §5.3).

    Order: mandatory AVPs (5005), peer identity by Origin-Host and source address
    (3010), then a common application (5010; the relay id counts as common).
    """
    check_mandatory(codec, cer, _CER_MANDATORY)
    # both present (checked just above) and typed DiameterIdentity, so str
    origin_host: str = cer.get(c.AVP_ORIGIN_HOST, default="")
    origin_realm: str = cer.get(c.AVP_ORIGIN_REALM, default="")
    if not policy.host_allowed(origin_host) or not policy.address_allowed(peer_address):
        raise DiameterError(UNKNOWN_PEER, f"peer {origin_host} at {peer_address} is not allowed")
    advertised = _advertised_applications(cer)
    common = advertised & policy.application_ids
    if RELAY_APPLICATION in advertised:
        common = set(policy.application_ids)
    if not common:
        raise DiameterError(
            NO_COMMON_APPLICATION,
            "no common application; offered " + ",".join(str(a) for a in sorted(advertised)),
        )
    return PeerCapabilities(origin_host, origin_realm, frozenset(common))


def _origin_state(identity: LocalIdentity) -> list[AvpSpec]:
    if identity.origin_state_id is None:
        return []
    return [(c.AVP_ORIGIN_STATE_ID, identity.origin_state_id)]


def capabilities_avps(
    codec: Codec, host_addresses: Iterable[str], application_ids: Iterable[int]
) -> list[AvpSpec]:
    """The capability AVPs shared by CER and CEA (RFC 6733 §5.3.1, §5.3.2)."""
    identity = codec.identity
    avps: list[AvpSpec] = [(c.AVP_HOST_IP_ADDRESS, address) for address in host_addresses]
    avps.append((c.AVP_VENDOR_ID, identity.vendor_id))
    avps.append((c.AVP_PRODUCT_NAME, identity.product_name))
    avps.extend(_origin_state(identity))
    avps.append((c.AVP_SUPPORTED_VENDOR_ID, TGPP_VENDOR))
    avps.extend((c.AVP_AUTH_APPLICATION_ID, app) for app in sorted(application_ids))
    avps.append((c.AVP_FIRMWARE_REVISION, identity.firmware_revision))
    return avps


def cea(
    codec: Codec,
    cer_header: Header,
    host_addresses: Iterable[str],
    application_ids: Iterable[int],
    error: DiameterError | None = None,
) -> bytes:
    """CEA for ``cer_header``: success, or ``error`` with its Failed-AVP."""
    avps = capabilities_avps(codec, host_addresses, application_ids)
    if error is None:
        return codec.encode_answer(cer_header, Answer(SUCCESS, avps))
    answer = Answer(error.result_code, avps, error.message or None, error.failed_avp)
    return codec.encode_answer(cer_header, answer)


def cer(
    codec: Codec,
    hop_by_hop: int,
    end_to_end: int,
    host_addresses: Iterable[str],
    application_ids: Iterable[int],
) -> bytes:
    identity = codec.identity
    avps: list[AvpSpec] = [
        (c.AVP_ORIGIN_HOST, identity.origin_host),
        (c.AVP_ORIGIN_REALM, identity.origin_realm),
    ]
    avps += capabilities_avps(codec, host_addresses, application_ids)
    return codec.encode_request(CER, 0, hop_by_hop, end_to_end, avps, proxiable=False)


def dwr(codec: Codec, hop_by_hop: int, end_to_end: int) -> bytes:
    identity = codec.identity
    avps: list[AvpSpec] = [
        (c.AVP_ORIGIN_HOST, identity.origin_host),
        (c.AVP_ORIGIN_REALM, identity.origin_realm),
    ]
    avps.extend(_origin_state(identity))
    return codec.encode_request(DWR, 0, hop_by_hop, end_to_end, avps, proxiable=False)


def dwa(codec: Codec, dwr_header: Header) -> bytes:
    return codec.encode_answer(dwr_header, Answer(SUCCESS, _origin_state(codec.identity)))


def dpr(codec: Codec, hop_by_hop: int, end_to_end: int, cause: int = REBOOTING) -> bytes:
    identity = codec.identity
    avps = [
        (c.AVP_ORIGIN_HOST, identity.origin_host),
        (c.AVP_ORIGIN_REALM, identity.origin_realm),
        (c.AVP_DISCONNECT_CAUSE, cause),
    ]
    return codec.encode_request(DPR, 0, hop_by_hop, end_to_end, avps, proxiable=False)


def dpa(codec: Codec, dpr_header: Header) -> bytes:
    return codec.encode_answer(dpr_header, Answer(SUCCESS))


__all__ = [
    "BASE_COMMANDS",
    "CER",
    "DPR",
    "DWR",
    "PeerCapabilities",
    "PeerPolicy",
    "cea",
    "cer",
    "check_cer",
    "dpa",
    "dpr",
    "dwa",
    "dwr",
]
