# Type stub for the compiled cext.codec extension (source: codec.pyx; keep the two in step).
from collections.abc import Iterable, Mapping
from typing import Any, Final, Self, TypeAlias, TypeVar, overload

_T = TypeVar("_T")

# A decoded AVP value. Its Python type follows the AVP's data type in the type table, which
# only the runtime knows: int (Integer*, Unsigned*, Enumerated, Time as Unix seconds), float
# (Float*), str (UTF8String, DiameterIdentity, DiameterURI, and an IPv4/IPv6 Address), bytes
# (OctetString and AVPs the table does not know), AvpGroup (Grouped), or (family, bytes) for
# an Address of another family. Callers narrow it where they read it.
_AvpValue: TypeAlias = Any

# An AVP to encode: (code, value), (code, vendor, value) or (code, vendor, flags, value).
# A Grouped value is a list or tuple of these, or bytes of already-encoded AVPs.
_AvpSpec: TypeAlias = tuple[int, Any] | tuple[int, int, Any] | tuple[int, int, int, Any]
# The codec takes a list or a tuple, no other sequence.
_AvpSpecs: TypeAlias = list[_AvpSpec] | tuple[_AvpSpec, ...]

OCTET_STRING: Final[int]
INTEGER32: Final[int]
INTEGER64: Final[int]
UNSIGNED32: Final[int]
UNSIGNED64: Final[int]
FLOAT32: Final[int]
FLOAT64: Final[int]
GROUPED: Final[int]
ADDRESS: Final[int]
TIME: Final[int]
UTF8STRING: Final[int]
DIAMETER_IDENTITY: Final[int]
DIAMETER_URI: Final[int]
ENUMERATED: Final[int]

TYPE_NAMES: dict[int, str]

FLAG_REQUEST: Final[int]
FLAG_PROXIABLE: Final[int]
FLAG_ERROR: Final[int]
FLAG_RETRANSMIT: Final[int]
AVP_FLAG_VENDOR: Final[int]
AVP_FLAG_MANDATORY: Final[int]
AVP_FLAG_PRIVATE: Final[int]
HEADER_LENGTH: Final[int]

class CodecError(ValueError):
    result_code: int
    failed_avp: bytes | None
    def __init__(self, message: str, result_code: int, failed_avp: bytes | None = None) -> None: ...

class TypeTable:
    """``TypeTable({(code, vendor): (type_code, default_flags), ...})``."""

    def __new__(cls, entries: Mapping[tuple[int, int], tuple[int, int]]) -> Self: ...
    def type_of(self, code: int, vendor: int = 0) -> int: ...
    def default_flags(self, code: int, vendor: int = 0) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...

class OccurrenceRules:
    """``OccurrenceRules({None: [(code, vendor), ...], (code, vendor): [...]})``: the AVPs
    that may occur at most once at the message level (None) and in each Grouped AVP."""

    def __new__(cls, rules: Mapping[tuple[int, int] | None, Iterable[tuple[int, int]]]) -> Self: ...
    def __len__(self) -> int: ...

class Header:
    """Read-only; made by decode_header() and decode_message() (calling it raises TypeError)."""

    @property
    def version(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def command_code(self) -> int: ...
    @property
    def application_id(self) -> int: ...
    @property
    def hop_by_hop(self) -> int: ...
    @property
    def end_to_end(self) -> int: ...
    @property
    def is_request(self) -> bool: ...
    @property
    def is_proxiable(self) -> bool: ...
    @property
    def is_error(self) -> bool: ...
    @property
    def is_retransmit(self) -> bool: ...

class _AvpList:
    """The AVPs of one level; lookups decode lazily and may raise CodecError (5004)."""

    @overload
    def get(self, code: int, vendor: int = 0, default: None = None) -> _AvpValue | None: ...
    @overload
    def get(self, code: int, vendor: int, default: _T) -> _AvpValue | _T: ...
    @overload
    def get(self, code: int, vendor: int = 0, *, default: _T) -> _AvpValue | _T: ...
    def get_all(self, code: int, vendor: int = 0) -> list[_AvpValue]: ...
    # group() and groups() raise TypeError when the AVP is not typed Grouped.
    def group(self, code: int, vendor: int = 0) -> AvpGroup | None: ...
    def groups(self, code: int, vendor: int = 0) -> list[AvpGroup]: ...
    def raw_avp(self, code: int, vendor: int = 0) -> bytes | None: ...
    def avps(self) -> list[tuple[int, int, int, _AvpValue]]: ...
    def __len__(self) -> int: ...

class Message(_AvpList):
    """Made by decode_message() (calling it raises TypeError)."""

    @property
    def header(self) -> Header: ...
    @property
    def raw(self) -> bytes: ...
    def first_unknown_mandatory(self) -> bytes | None: ...
    def first_repeated(self, rules: OccurrenceRules) -> bytes | None: ...

class AvpGroup(_AvpList):
    """Made by Message.group() and friends (calling it raises TypeError)."""

def decode_header(buf: bytes | bytearray | memoryview) -> Header: ...
def decode_message(buf: bytes | bytearray | memoryview, types: TypeTable) -> Message: ...
def encode_avps(avps: _AvpSpecs, types: TypeTable) -> bytes: ...
def encode_message(
    flags: int,
    command_code: int,
    application_id: int,
    hop_by_hop: int,
    end_to_end: int,
    avps: _AvpSpecs,
    types: TypeTable,
) -> bytes: ...
