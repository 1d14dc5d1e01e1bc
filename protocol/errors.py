"""Diameter errors that carry their Result-Code, and the one place they are mapped.

Every failure that must reach the peer as an answer is a :class:`DiameterError`: the
Result-Code, the optional Failed-AVP payload (the raw offending AVP, RFC 6733 §7.5) and
a human-readable Error-Message. Codec failures arrive as ``cext.codec.CodecError`` and
are turned into the same type by :func:`from_codec_error`, so the transport has a
single ``except DiameterError`` path.
"""

from __future__ import annotations

from cext.codec import CodecError

from .dictionary import constants as c

SUCCESS = c.E_RESULT_CODE_DIAMETER_SUCCESS
COMMAND_UNSUPPORTED = c.E_RESULT_CODE_DIAMETER_COMMAND_UNSUPPORTED
APPLICATION_UNSUPPORTED = c.E_RESULT_CODE_DIAMETER_APPLICATION_UNSUPPORTED
UNKNOWN_PEER = c.E_RESULT_CODE_DIAMETER_UNKNOWN_PEER
AVP_UNSUPPORTED = c.E_RESULT_CODE_DIAMETER_AVP_UNSUPPORTED
INVALID_AVP_VALUE = c.E_RESULT_CODE_DIAMETER_INVALID_AVP_VALUE
MISSING_AVP = c.E_RESULT_CODE_DIAMETER_MISSING_AVP
AVP_OCCURS_TOO_MANY_TIMES = c.E_RESULT_CODE_DIAMETER_AVP_OCCURS_TOO_MANY_TIMES
NO_COMMON_APPLICATION = c.E_RESULT_CODE_DIAMETER_NO_COMMON_APPLICATION
UNABLE_TO_COMPLY = c.E_RESULT_CODE_DIAMETER_UNABLE_TO_COMPLY
INVALID_MESSAGE_LENGTH = c.E_RESULT_CODE_DIAMETER_INVALID_MESSAGE_LENGTH


def is_protocol_error(result_code: int) -> bool:
    """3xxx answers are protocol errors: sent with the E bit in the answer-message format."""
    return 3000 <= result_code < 4000


class DiameterError(Exception):
    """A request that must be answered with ``result_code`` instead of being processed."""

    def __init__(
        self, result_code: int, message: str = "", failed_avp: bytes | None = None
    ) -> None:
        super().__init__(message or f"Result-Code {result_code}")
        self.result_code = result_code
        self.message = message
        self.failed_avp = failed_avp


def from_codec_error(error: CodecError) -> DiameterError:
    return DiameterError(error.result_code, str(error), error.failed_avp)
