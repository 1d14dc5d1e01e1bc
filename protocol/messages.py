"""Codec facade: decode requests and build answers with our Cython codec.

The transport, the base commands and the applications build messages only through
:class:`Codec`, so the type table is bound once and every answer gets the same
standard head: Session-Id first when the request had one (RFC 6733 §8.8), then
Result-Code, Origin-Host and Origin-Realm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from cext import codec as _codec
from cext.codec import AvpGroup, CodecError, Header, Message, OccurrenceRules

from .dictionary import build_type_table
from .dictionary import constants as c
from .errors import (
    AVP_OCCURS_TOO_MANY_TIMES,
    MISSING_AVP,
    DiameterError,
    from_codec_error,
    is_protocol_error,
)

FLAG_REQUEST = _codec.FLAG_REQUEST
FLAG_PROXIABLE = _codec.FLAG_PROXIABLE
FLAG_ERROR = _codec.FLAG_ERROR
FLAG_RETRANSMIT = _codec.FLAG_RETRANSMIT

AvpSpec: TypeAlias = tuple[int, Any] | tuple[int, int, Any] | tuple[int, int, int, Any]
"""An AVP to encode: ``(code, value)``, ``(code, vendor, value)`` or ``(code, vendor,
flags, value)``; a Grouped value is a list of these (see ``cext.codec.encode_message``).
The value is ``Any`` because its type follows the AVP's type in the dictionary."""

_ZERO_WIDTH = {
    _codec.INTEGER32: 4,
    _codec.UNSIGNED32: 4,
    _codec.ENUMERATED: 4,
    _codec.FLOAT32: 4,
    _codec.TIME: 4,
    _codec.INTEGER64: 8,
    _codec.UNSIGNED64: 8,
    _codec.FLOAT64: 8,
    _codec.ADDRESS: 6,
}


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """Who we are on the Diameter side; sent in CEA, DWA, DPA and every answer."""

    origin_host: str
    origin_realm: str
    vendor_id: int = 0
    product_name: str = "ocs"
    firmware_revision: int = 1
    origin_state_id: int | None = None
    """RFC 6733 §8.16: only increases, and only when the node lost its sessions. An OCS
    keeps its sessions in Redis, so a restart loses nothing; None leaves it out."""


@dataclass(slots=True)
class Answer:
    """What an application returns for one request: a Result-Code and its own AVPs.

    The codec adds Session-Id, Result-Code, Origin-Host and Origin-Realm in front of
    ``avps``, so an application lists only what is specific to the command.

    ``kind`` is an opaque label of the application's choosing from a small closed set
    (the Gy application gives the CC-Request-Type name, ``"initial"`` ...): the
    transport does not read it, only hands it to its observer with the answer, so
    metrics can tell requests apart without the transport knowing the application.
    """

    result_code: int
    avps: list[AvpSpec] = field(default_factory=list)
    error_message: str | None = None
    failed_avp: bytes | None = None
    kind: str | None = None


class Codec:
    """Our codec bound to the dictionary's type table and to the local identity."""

    __slots__ = ("types", "identity")

    def __init__(self, identity: LocalIdentity) -> None:
        self.types = build_type_table()
        self.identity = identity

    # decoding -----------------------------------------------------------------

    def decode(self, buf: bytes) -> Message:
        """Decode one whole message; structural faults raise :class:`DiameterError`."""
        try:
            return _codec.decode_message(buf, self.types)
        except CodecError as error:
            raise from_codec_error(error) from None

    @staticmethod
    def header(buf: bytes) -> Header:
        return _codec.decode_header(buf)

    # encoding -----------------------------------------------------------------

    def encode_request(
        self,
        command_code: int,
        application_id: int,
        hop_by_hop: int,
        end_to_end: int,
        avps: Sequence[AvpSpec],
        proxiable: bool = True,
    ) -> bytes:
        flags = FLAG_REQUEST | (FLAG_PROXIABLE if proxiable else 0)
        return _codec.encode_message(
            flags, command_code, application_id, hop_by_hop, end_to_end, list(avps), self.types
        )

    def encode_answer(
        self,
        request: Header,
        answer: Answer,
        session_id: str | None = None,
        error_bit: bool = False,
    ) -> bytes:
        """Answer ``request`` with ``answer``; 3xxx codes get the E bit (RFC 6733 §7.1.3),
        and so does any answer sent with ``error_bit``: one in the answer-message format
        (§7.2) because it cannot conform to its command's (e.g. no Session-Id to echo)."""
        identity = self.identity
        avps: list[AvpSpec] = []
        if session_id is not None:
            avps.append((c.AVP_SESSION_ID, session_id))
        avps.append((c.AVP_RESULT_CODE, answer.result_code))
        avps.append((c.AVP_ORIGIN_HOST, identity.origin_host))
        avps.append((c.AVP_ORIGIN_REALM, identity.origin_realm))
        avps.extend(answer.avps)
        if answer.error_message:
            avps.append((c.AVP_ERROR_MESSAGE, answer.error_message[:200]))
        if answer.failed_avp is not None:
            avps.append((c.AVP_FAILED_AVP, answer.failed_avp))
        flags = request.flags & FLAG_PROXIABLE
        if error_bit or is_protocol_error(answer.result_code):
            flags |= FLAG_ERROR
        return _codec.encode_message(
            flags,
            request.command_code,
            request.application_id,
            request.hop_by_hop,
            request.end_to_end,
            avps,
            self.types,
        )

    def encode_error(
        self,
        request: Header,
        error: DiameterError,
        session_id: str | None = None,
        error_bit: bool = False,
    ) -> bytes:
        """The answer to a request that failed before reaching its handler."""
        return self.encode_answer(
            request,
            Answer(error.result_code, [], error.message or None, error.failed_avp),
            session_id,
            error_bit,
        )

    def missing_avp(self, code: int, vendor: int = 0) -> bytes:
        """Failed-AVP content for a missing AVP: an example with a zeroed value.

        RFC 6733 §7.5: the example carries the Vendor-Id if applicable and a value
        field of the correct minimum length filled with zeroes.
        """
        width = _ZERO_WIDTH.get(self.types.type_of(code, vendor), 0)
        flags = self.types.default_flags(code, vendor)
        value = b"\x00\x01" + bytes(4) if width == 6 else bytes(width)
        return _codec.encode_avps([(code, vendor, flags, value)], _RAW_TYPES)


# An empty table: every AVP is unknown, so its value is taken as raw bytes.
_RAW_TYPES = _codec.TypeTable({})


def value_or_none(message: Message, code: int, vendor: int = 0) -> Any:
    """The decoded value of an AVP, or None when it is absent or its value is invalid.

    For AVPs read on the transport's own paths (Session-Id to echo, Origin-Host for
    the retransmission cache), where a bad value must not stop the answer.
    """
    try:
        return message.get(code, vendor)
    except CodecError:
        return None


def session_id_of(message: Message) -> str | None:
    """The Session-Id of a decoded message, if it carries a valid one."""
    value = value_or_none(message, c.AVP_SESSION_ID)
    return value if isinstance(value, str) else None


def check_mandatory(
    codec: Codec, message: Message | AvpGroup, required: Sequence[tuple[int, int]]
) -> None:
    """Raise 5005 with an example Failed-AVP for the first AVP of ``required`` missing."""
    for code, vendor in required:
        if message.raw_avp(code, vendor) is None:
            raise DiameterError(
                MISSING_AVP,
                f"missing AVP {code}" + (f" (vendor {vendor})" if vendor else ""),
                codec.missing_avp(code, vendor),
            )


def check_occurrences(message: Message, rules: OccurrenceRules) -> None:
    """Raise 5009 DIAMETER_AVP_OCCURS_TOO_MANY_TIMES for the first AVP that ``rules``
    allow once and ``message`` repeats; Failed-AVP is that second occurrence (RFC 6733
    §7.1.5: "the first instance of the offending AVP that exceeded the maximum")."""
    repeated = message.first_repeated(rules)
    if repeated is not None:
        code = int.from_bytes(repeated[:4], "big")
        vendor = int.from_bytes(repeated[8:12], "big") if repeated[4] & 0x80 else 0
        raise DiameterError(
            AVP_OCCURS_TOO_MANY_TIMES,
            f"AVP {code}" + (f" (vendor {vendor})" if vendor else "") + " occurs more than once",
            repeated,
        )
