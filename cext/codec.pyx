# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Diameter message codec (RFC 6733 §3, §4.1-4.3).

Decoding is split in two so that a handler pays only for what it reads:

* :func:`decode_message` checks the whole structure in one C-level walk (header,
  every AVP header, nested Grouped AVPs, fixed-size data lengths) and records the
  top-level AVPs in a C array.  No Python object is created per AVP.
* :class:`Message` / :class:`AvpGroup` decode a value only when it is asked for.

Encoding turns a compact tuple description into bytes, written straight into one
growing C buffer with every length and padding computed in place.

This module imports nothing from the rest of the project: the AVP type table is
given to it as plain data (see ``protocol.dictionary``).
"""

import ipaddress

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport fabs, isfinite
from libc.stdint cimport (
    INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, UINT32_MAX, UINT64_MAX, int32_t, int64_t,
    uint8_t, uint32_t, uint64_t,
)
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL

cdef extern from "float.h":
    const double FLT_MAX


# --------------------------------------------------------------------------- constants

cdef enum:
    T_UNKNOWN = 0
    T_OCTET_STRING = 1
    T_INTEGER32 = 2
    T_INTEGER64 = 3
    T_UNSIGNED32 = 4
    T_UNSIGNED64 = 5
    T_FLOAT32 = 6
    T_FLOAT64 = 7
    T_GROUPED = 8
    T_ADDRESS = 9
    T_TIME = 10
    T_UTF8STRING = 11
    T_DIAMETER_IDENTITY = 12
    T_DIAMETER_URI = 13
    T_ENUMERATED = 14
    T_MAX = 14

OCTET_STRING = T_OCTET_STRING
INTEGER32 = T_INTEGER32
INTEGER64 = T_INTEGER64
UNSIGNED32 = T_UNSIGNED32
UNSIGNED64 = T_UNSIGNED64
FLOAT32 = T_FLOAT32
FLOAT64 = T_FLOAT64
GROUPED = T_GROUPED
ADDRESS = T_ADDRESS
TIME = T_TIME
UTF8STRING = T_UTF8STRING
DIAMETER_IDENTITY = T_DIAMETER_IDENTITY
DIAMETER_URI = T_DIAMETER_URI
ENUMERATED = T_ENUMERATED

#: RFC 6733 names of the data types, for messages.
TYPE_NAMES = {
    0: "Unknown",
    T_OCTET_STRING: "OctetString",
    T_INTEGER32: "Integer32",
    T_INTEGER64: "Integer64",
    T_UNSIGNED32: "Unsigned32",
    T_UNSIGNED64: "Unsigned64",
    T_FLOAT32: "Float32",
    T_FLOAT64: "Float64",
    T_GROUPED: "Grouped",
    T_ADDRESS: "Address",
    T_TIME: "Time",
    T_UTF8STRING: "UTF8String",
    T_DIAMETER_IDENTITY: "DiameterIdentity",
    T_DIAMETER_URI: "DiameterURI",
    T_ENUMERATED: "Enumerated",
}

cdef enum:
    C_REQUEST = 0x80
    C_PROXIABLE = 0x40
    C_ERROR = 0x20
    C_RETRANSMIT = 0x10
    C_RESERVED = 0x0F
    A_VENDOR = 0x80
    A_MANDATORY = 0x40
    A_PRIVATE = 0x20
    A_RESERVED = 0x1F

FLAG_REQUEST = C_REQUEST
FLAG_PROXIABLE = C_PROXIABLE
FLAG_ERROR = C_ERROR
FLAG_RETRANSMIT = C_RETRANSMIT
AVP_FLAG_VENDOR = A_VENDOR
AVP_FLAG_MANDATORY = A_MANDATORY
AVP_FLAG_PRIVATE = A_PRIVATE
HEADER_LENGTH = 20

# Result-Codes (RFC 6733 §7.1) this module reports.
cdef enum:
    RC_INVALID_HDR_BITS = 3008
    RC_INVALID_AVP_BITS = 3009
    RC_INVALID_AVP_VALUE = 5004
    RC_UNSUPPORTED_VERSION = 5011
    RC_INVALID_AVP_LENGTH = 5014
    RC_INVALID_MESSAGE_LENGTH = 5015

# Time (RFC 6733 §4.3.1) is the 32-bit seconds field of an NTP timestamp (RFC 5905).
# Era 0 starts 1900-01-01, 2208988800 s before the Unix epoch; a value with the top
# bit clear is read as era 1, which starts 2036-02-07 06:28:16 UTC (2**32 s later).
cdef int64_t NTP_ERA0_OFFSET = 2208988800
cdef int64_t NTP_ERA1_UNIX = 2085978496     # 2**32 - NTP_ERA0_OFFSET
cdef int64_t TIME_MIN_UNIX = -61505152      # era 0 value 0x80000000 (1968-01-20)
cdef int64_t TIME_END_UNIX = 4233462144     # era 1 value 0x80000000: first one out of range

cdef enum:
    MAX_LENGTH = 0xFFFFFF            # 24-bit message and AVP length fields
    MAX_ENCODE_DEPTH = 32            # guards against self-referencing AVP lists


class CodecError(ValueError):
    """A message that cannot be decoded, with the Result-Code that answers it.

    ``failed_avp`` is the content for a Failed-AVP (RFC 6733 §7.5): the raw bytes of
    the offending AVP.  When the AVP's length is wrong the AVP cannot be cut out
    exactly, so it holds the AVP header (zero-filled to the minimum header size if
    the message ends inside it) followed by whatever data the container holds, as
    §7.7 for DIAMETER_INVALID_AVP_LENGTH allows.  It is always a whole number of
    32-bit words, so it can be placed inside a Grouped AVP as it is.
    """

    def __init__(self, message, result_code, failed_avp=None):
        super().__init__(message)
        self.result_code = result_code
        self.failed_avp = failed_avp


# --------------------------------------------------------------------------- byte helpers

cdef inline uint32_t _rd32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline uint32_t _rd24(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 16) | (<uint32_t>p[1] << 8) | p[2]

cdef inline uint64_t _rd64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>_rd32(p) << 32) | _rd32(p + 4)

cdef inline void _wr32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v

cdef inline void _wr64(uint8_t* p, uint64_t v) noexcept nogil:
    _wr32(p, <uint32_t>(v >> 32))
    _wr32(p + 4, <uint32_t>v)

cdef inline uint32_t _pad4(uint32_t n) noexcept nogil:
    return (n + 3) & ~(<uint32_t>3)


# --------------------------------------------------------------------------- type table

ctypedef struct _Slot:
    uint64_t key            # code | vendor << 32
    uint8_t used
    uint8_t type
    uint8_t flags


cdef class TypeTable:
    """AVP data types and default flags, keyed by (code, vendor-id).

    ``TypeTable({(code, vendor): (type_code, default_flags), ...})``.  The entries
    live in a C open-addressing hash table, so the decoder looks a type up without
    touching Python objects.
    """

    cdef _Slot* _slots
    cdef uint64_t _mask
    cdef int _shift
    cdef Py_ssize_t _n

    def __cinit__(self, entries):
        cdef uint64_t cap = 8
        cdef int bits = 3
        cdef uint32_t code, vendor
        cdef int type_code, flags
        cdef _Slot* slot
        n = len(entries)
        while cap < 2 * <uint64_t>n:
            cap <<= 1
            bits += 1
        self._slots = <_Slot*>malloc(cap * sizeof(_Slot))
        if self._slots == NULL:
            raise MemoryError()
        memset(self._slots, 0, cap * sizeof(_Slot))
        self._mask = cap - 1
        self._shift = 64 - bits
        for key, value in entries.items():
            try:
                (code_o, vendor_o), (type_o, flags_o) = key, value
                code, vendor, type_code, flags = code_o, vendor_o, type_o, flags_o
            except (TypeError, ValueError, OverflowError):
                raise ValueError(
                    f"type table entry {key!r}: {value!r} is not "
                    "(code, vendor): (type_code, default_flags)"
                ) from None
            if not 1 <= type_code <= T_MAX:
                raise ValueError(f"type table entry {key!r}: unknown type code {type_code}")
            if not 0 <= flags <= 0xFF or flags & A_RESERVED:
                raise ValueError(f"type table entry {key!r}: invalid default flags {flags:#x}")
            slot = self._probe(code, vendor)
            if not slot.used:
                self._n += 1
            slot.used = 1
            slot.key = code | (<uint64_t>vendor << 32)
            slot.type = <uint8_t>type_code
            slot.flags = <uint8_t>flags

    def __dealloc__(self):
        free(self._slots)

    cdef inline _Slot* _probe(self, uint32_t code, uint32_t vendor) noexcept:
        """The slot holding (code, vendor), or the empty slot where it would go."""
        cdef uint64_t key = code | (<uint64_t>vendor << 32)
        cdef uint64_t i = (key * <uint64_t>0x9E3779B97F4A7C15ULL) >> self._shift
        cdef _Slot* slot
        while True:
            slot = &self._slots[i]
            if not slot.used or slot.key == key:
                return slot
            i = (i + 1) & self._mask

    cdef inline _Slot* _find(self, uint32_t code, uint32_t vendor) noexcept:
        cdef _Slot* slot = self._probe(code, vendor)
        return slot if slot.used else NULL

    def type_of(self, uint32_t code, uint32_t vendor=0):
        """The data type code of the AVP, 0 when the table does not know it."""
        cdef _Slot* slot = self._find(code, vendor)
        return slot.type if slot != NULL else 0

    def default_flags(self, uint32_t code, uint32_t vendor=0):
        """The flags an encoded AVP gets when none are given (0 when unknown)."""
        cdef _Slot* slot = self._find(code, vendor)
        return slot.flags if slot != NULL else 0

    def __contains__(self, key):
        try:
            code, vendor = key
            return self._find(code, vendor) != NULL
        except (TypeError, ValueError, OverflowError):
            return False

    def __len__(self):
        return self._n

    def __repr__(self):
        return f"<TypeTable: {self._n} AVPs>"


# --------------------------------------------------------------------------- header

cdef class Header:
    """The 20-byte Diameter message header (RFC 6733 §3), read-only."""

    cdef readonly unsigned int version
    cdef readonly unsigned int length
    cdef readonly unsigned int flags
    cdef readonly unsigned int command_code
    cdef readonly unsigned int application_id
    cdef readonly unsigned int hop_by_hop
    cdef readonly unsigned int end_to_end

    def __init__(self):
        raise TypeError("Header objects come from decode_header() or decode_message()")

    @property
    def is_request(self):
        return bool(self.flags & C_REQUEST)

    @property
    def is_proxiable(self):
        return bool(self.flags & C_PROXIABLE)

    @property
    def is_error(self):
        return bool(self.flags & C_ERROR)

    @property
    def is_retransmit(self):
        return bool(self.flags & C_RETRANSMIT)

    def __repr__(self):
        return (
            f"<Header version={self.version} length={self.length} flags={self.flags:#04x} "
            f"command_code={self.command_code} application_id={self.application_id} "
            f"hop_by_hop={self.hop_by_hop:#010x} end_to_end={self.end_to_end:#010x}>"
        )


cdef Header _make_header(const uint8_t* p):
    cdef Header h = Header.__new__(Header)
    h.version = p[0]
    h.length = _rd24(p + 1)
    h.flags = p[4]
    h.command_code = _rd24(p + 5)
    h.application_id = _rd32(p + 8)
    h.hop_by_hop = _rd32(p + 12)
    h.end_to_end = _rd32(p + 16)
    return h


def decode_header(buf):
    """Read the header of ``buf`` (any bytes-like object); no validation but its size."""
    if not isinstance(buf, bytes):
        buf = bytes(memoryview(buf)[:20])
    if PyBytes_GET_SIZE(buf) < 20:
        raise CodecError(
            f"message of {PyBytes_GET_SIZE(buf)} bytes is shorter than the 20-byte header",
            RC_INVALID_MESSAGE_LENGTH,
        )
    return _make_header(<const uint8_t*>PyBytes_AS_STRING(buf))


# --------------------------------------------------------------------------- validation walk

cdef class _AvpList
cdef class AvpGroup
cdef class OccurrenceRules

ctypedef struct _Avp:
    uint32_t code
    uint32_t vendor
    uint32_t start          # offset of the AVP header in the message
    uint32_t data           # offset of the data
    uint32_t dlen           # data length, without padding
    uint8_t flags
    uint8_t type            # from the type table, 0 when unknown

# Why a walk failed; the message text is made from these in _fault_error().
cdef enum:
    F_TRUNCATED_HEADER = 1
    F_SHORT_LENGTH = 2
    F_PAST_CONTAINER = 3
    F_BAD_SIZE = 4
    F_RESERVED_BITS = 5

ctypedef struct _Fault:
    int reason
    uint32_t start          # offset of the offending AVP
    uint32_t end            # end of the bytes that are copied into failed_avp
    uint32_t hdr_min        # failed_avp is zero-filled up to this many bytes
    uint32_t container_end
    uint32_t code
    uint32_t vendor
    uint32_t length
    uint8_t flags
    uint8_t type


cdef inline bint _bad_size(int typ, const uint8_t* d, uint32_t n) noexcept:
    """True when ``n`` data bytes are wrong for a fixed-size type (RFC 6733 §4.2-4.3)."""
    cdef uint32_t family
    if typ == T_UNSIGNED32 or typ == T_INTEGER32 or typ == T_ENUMERATED \
            or typ == T_FLOAT32 or typ == T_TIME:
        return n != 4
    if typ == T_UNSIGNED64 or typ == T_INTEGER64 or typ == T_FLOAT64:
        return n != 8
    if typ == T_ADDRESS:
        if n < 2:
            return True
        family = (<uint32_t>d[0] << 8) | d[1]
        if family == 1:
            return n != 6
        if family == 2:
            return n != 18
    return False


cdef int _walk(const uint8_t* buf, uint32_t pos, uint32_t end, TypeTable types,
               _AvpList out, bint recurse, _Fault* fault, uint32_t* unknown) except -1:
    """Check the AVPs in buf[pos:end] and index the outermost ones into ``out``.

    With ``recurse`` it descends into every AVP the table types as Grouped, using an
    explicit stack of container ends (so a hostile message cannot exhaust the C
    stack), and records in ``unknown[0:2]`` the span of the first AVP with the M bit
    that the table does not know.  Returns 0 when the structure is valid, 1 with
    ``fault`` filled in otherwise.

    A child may end (unpadded) exactly at the end of its group with its padding
    outside it, as some peers encode it; the group's own padding then covers it.
    """
    cdef uint32_t ends_inline[16]
    cdef uint32_t* ends = ends_inline
    cdef uint32_t* grown
    cdef Py_ssize_t depth = 0, cap = 16
    cdef uint32_t cend, rem, code, length, hdr, vendor, dstart, dlen
    cdef uint8_t flags
    cdef int typ
    cdef _Slot* slot
    cdef _Avp* e
    ends[0] = end
    try:
        while True:
            cend = ends[depth]
            if pos >= cend:
                if depth == 0:
                    return 0
                depth -= 1
                pos = _pad4(cend)           # the end of the enclosing Grouped AVP
                continue
            rem = cend - pos
            fault.start = pos
            fault.container_end = cend
            if rem < 8:
                fault.reason = F_TRUNCATED_HEADER
                fault.end = cend
                fault.hdr_min = 8
                fault.length = 0
                fault.code = _rd32(buf + pos) if rem >= 4 else 0
                fault.vendor = 0
                fault.flags = 0
                return 1
            code = _rd32(buf + pos)
            flags = buf[pos + 4]
            length = _rd24(buf + pos + 5)
            hdr = 12 if flags & A_VENDOR else 8
            vendor = _rd32(buf + pos + 8) if rem >= 12 and hdr == 12 else 0
            fault.code = code
            fault.flags = flags
            fault.length = length
            fault.vendor = vendor
            fault.hdr_min = hdr
            if rem < hdr:
                fault.reason = F_TRUNCATED_HEADER
                fault.end = cend
                return 1
            if length < hdr:
                fault.reason = F_SHORT_LENGTH
                fault.end = pos + hdr
                return 1
            if length > rem:
                fault.reason = F_PAST_CONTAINER
                fault.end = cend
                return 1
            if flags & A_RESERVED:
                fault.reason = F_RESERVED_BITS
                fault.end = pos + _pad4(length)
                return 1
            dstart = pos + hdr
            dlen = length - hdr
            slot = types._find(code, vendor)
            typ = slot.type if slot != NULL else T_UNKNOWN
            if typ != T_UNKNOWN and _bad_size(typ, buf + dstart, dlen):
                fault.reason = F_BAD_SIZE
                fault.type = <uint8_t>typ
                fault.end = pos + _pad4(length)
                return 1
            if typ == T_UNKNOWN and flags & A_MANDATORY and unknown != NULL \
                    and unknown[1] == 0:
                unknown[0] = pos
                unknown[1] = pos + _pad4(length)
            if depth == 0 and out is not None:
                e = out._push()
                e.code = code
                e.vendor = vendor
                e.start = pos
                e.data = dstart
                e.dlen = dlen
                e.flags = flags
                e.type = <uint8_t>typ
            if typ == T_GROUPED and recurse and dlen > 0:
                depth += 1
                if depth == cap:
                    grown = <uint32_t*>malloc(2 * cap * sizeof(uint32_t))
                    if grown == NULL:
                        raise MemoryError()
                    memcpy(grown, ends, cap * sizeof(uint32_t))
                    if ends != ends_inline:
                        free(ends)
                    ends = grown
                    cap *= 2
                ends[depth] = dstart + dlen
                pos = dstart
            else:
                pos += _pad4(length)
    finally:
        if ends != ends_inline:
            free(ends)


cdef bytes _fault_bytes(const uint8_t* buf, _Fault* f):
    """Failed-AVP content for a fault: the bytes, zero-filled to a whole AVP header
    and then to a 32-bit boundary."""
    cdef uint32_t n = f.end - f.start
    cdef uint32_t size = n if n >= f.hdr_min else f.hdr_min
    size = _pad4(size)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    memcpy(p, buf + f.start, n)
    memset(p + n, 0, size - n)
    return out


cdef object _fault_error(const uint8_t* buf, _Fault* f):
    where = f"AVP {f.code}" + (f" (vendor {f.vendor})" if f.vendor else "")
    where += f" at offset {f.start}"
    cdef int rc = RC_INVALID_AVP_LENGTH
    if f.reason == F_TRUNCATED_HEADER:
        text = (f"truncated AVP header at offset {f.start}: "
                f"{f.container_end - f.start} bytes left, {f.hdr_min} needed")
    elif f.reason == F_SHORT_LENGTH:
        text = f"{where}: length {f.length} is shorter than its {f.hdr_min}-byte header"
    elif f.reason == F_PAST_CONTAINER:
        text = (f"{where}: length {f.length} runs past the end of its container "
                f"({f.container_end - f.start} bytes left)")
    elif f.reason == F_RESERVED_BITS:
        rc = RC_INVALID_AVP_BITS
        text = f"{where}: reserved AVP flag bits set (flags {f.flags:#04x})"
    else:
        text = (f"{where}: {f.length - f.hdr_min} data bytes are invalid "
                f"for {TYPE_NAMES[f.type]}")
    return CodecError(text, rc, _fault_bytes(buf, f))


# --------------------------------------------------------------------------- decoded views

cdef class _AvpList:
    """Indexed AVPs of one level (a message or a group) over the message bytes."""

    cdef bytes _data
    cdef const uint8_t* _buf
    cdef TypeTable _types
    cdef _Avp* _avps
    cdef Py_ssize_t _n
    cdef Py_ssize_t _cap
    cdef bint _heap

    def __dealloc__(self):
        if self._heap:
            free(self._avps)

    cdef _Avp* _push(self) except NULL:
        cdef _Avp* grown
        if self._n == self._cap:
            if self._heap:
                grown = <_Avp*>realloc(self._avps, 2 * self._cap * sizeof(_Avp))
            else:
                grown = <_Avp*>malloc(2 * self._cap * sizeof(_Avp))
                if grown != NULL:
                    memcpy(grown, self._avps, self._n * sizeof(_Avp))
            if grown == NULL:
                raise MemoryError()
            self._avps = grown
            self._heap = True
            self._cap *= 2
        self._n += 1
        return &self._avps[self._n - 1]

    cdef inline _Avp* _first(self, uint32_t code, uint32_t vendor) noexcept:
        cdef Py_ssize_t i
        for i in range(self._n):
            if self._avps[i].code == code and self._avps[i].vendor == vendor:
                return &self._avps[i]
        return NULL

    cdef object _value(self, _Avp* e):
        """Decode one AVP's value according to its type (module docstring)."""
        cdef const uint8_t* d = self._buf + e.data
        cdef uint32_t n = e.dlen
        cdef int typ = e.type
        cdef uint32_t u32
        cdef uint64_t u64
        cdef float f32
        cdef double f64
        if typ == T_UNSIGNED32:
            return _rd32(d)
        if typ == T_UTF8STRING or typ == T_DIAMETER_IDENTITY or typ == T_DIAMETER_URI:
            try:
                return PyUnicode_DecodeUTF8(<const char*>d, n, NULL)
            except UnicodeDecodeError as error:
                raise CodecError(
                    f"AVP {e.code}" + (f" (vendor {e.vendor})" if e.vendor else "")
                    + f": {TYPE_NAMES[typ]} value is not valid UTF-8 ({error.reason} "
                    f"at byte {error.start})",
                    RC_INVALID_AVP_VALUE,
                    self._raw(e),
                ) from None
        if typ == T_GROUPED:
            return _make_group(self, e)
        if typ == T_UNSIGNED64:
            return _rd64(d)
        if typ == T_INTEGER32 or typ == T_ENUMERATED:
            return <int32_t>_rd32(d)
        if typ == T_INTEGER64:
            return <int64_t>_rd64(d)
        if typ == T_TIME:
            u32 = _rd32(d)
            if u32 & 0x80000000:
                return <int64_t>u32 - NTP_ERA0_OFFSET
            return <int64_t>u32 + NTP_ERA1_UNIX
        if typ == T_FLOAT32:
            u32 = _rd32(d)
            memcpy(&f32, &u32, 4)
            return <double>f32
        if typ == T_FLOAT64:
            u64 = _rd64(d)
            memcpy(&f64, &u64, 8)
            return f64
        if typ == T_ADDRESS:
            u32 = (<uint32_t>d[0] << 8) | d[1]
            if u32 == 1:
                return f"{d[2]}.{d[3]}.{d[4]}.{d[5]}"
            if u32 == 2:
                return ipaddress.IPv6Address(PyBytes_FromStringAndSize(<const char*>d + 2, 16)).compressed
            return (u32, PyBytes_FromStringAndSize(<const char*>d + 2, n - 2))
        return PyBytes_FromStringAndSize(<const char*>d, n)

    cdef bytes _raw(self, _Avp* e):
        cdef uint32_t end = e.start + _pad4(e.data + e.dlen - e.start)
        cdef uint32_t size = <uint32_t>PyBytes_GET_SIZE(self._data)
        if end > size:
            end = size
        return PyBytes_FromStringAndSize(<const char*>self._buf + e.start, end - e.start)

    cdef AvpGroup _group_of(self, _Avp* e):
        if e.type != T_GROUPED:
            raise TypeError(
                f"AVP {e.code} (vendor {e.vendor}) is {TYPE_NAMES[e.type]}, not Grouped"
            )
        return _make_group(self, e)

    def get(self, uint32_t code, uint32_t vendor=0, default=None):
        """The decoded value of the first AVP with this code and vendor."""
        cdef _Avp* e = self._first(code, vendor)
        return self._value(e) if e != NULL else default

    def get_all(self, uint32_t code, uint32_t vendor=0):
        """The decoded values of every AVP with this code and vendor, in order."""
        cdef Py_ssize_t i
        out = []
        for i in range(self._n):
            if self._avps[i].code == code and self._avps[i].vendor == vendor:
                out.append(self._value(&self._avps[i]))
        return out

    def group(self, uint32_t code, uint32_t vendor=0):
        """The first Grouped AVP with this code and vendor, or None."""
        cdef _Avp* e = self._first(code, vendor)
        return self._group_of(e) if e != NULL else None

    def groups(self, uint32_t code, uint32_t vendor=0):
        """Every Grouped AVP with this code and vendor, in order."""
        cdef Py_ssize_t i
        out = []
        for i in range(self._n):
            if self._avps[i].code == code and self._avps[i].vendor == vendor:
                out.append(self._group_of(&self._avps[i]))
        return out

    def raw_avp(self, uint32_t code, uint32_t vendor=0):
        """The whole first AVP with this code and vendor (header, data, padding)."""
        cdef _Avp* e = self._first(code, vendor)
        return self._raw(e) if e != NULL else None

    def avps(self):
        """``(code, flags, vendor, value)`` for every AVP of this level, in order."""
        cdef Py_ssize_t i
        cdef _Avp* e
        out = []
        for i in range(self._n):
            e = &self._avps[i]
            out.append((e.code, e.flags, e.vendor, self._value(e)))
        return out

    def __len__(self):
        return self._n


cdef class Message(_AvpList):
    """A decoded message: its header and lazily decoded top-level AVPs."""

    cdef readonly Header header
    cdef uint32_t _unknown[2]
    cdef _Avp _inline[24]

    def __cinit__(self):
        self._avps = self._inline
        self._cap = 24

    def __init__(self):
        raise TypeError("Message objects come from decode_message()")

    @property
    def raw(self):
        """The message bytes."""
        return self._data

    def first_unknown_mandatory(self):
        """The first AVP with the M bit the type table does not know, or None.

        Found in the validation walk, at the top level or inside a Grouped AVP the
        table knows; answer it with DIAMETER_AVP_UNSUPPORTED (5001).
        """
        if self._unknown[1] == 0:
            return None
        return PyBytes_FromStringAndSize(
            <const char*>self._buf + self._unknown[0], self._unknown[1] - self._unknown[0]
        )

    def first_repeated(self, OccurrenceRules rules not None):
        """The first AVP that occurs again where ``rules`` allow it once, or None.

        The second occurrence, whole (header, data, padding), as Failed-AVP for
        DIAMETER_AVP_OCCURS_TOO_MANY_TIMES (5009). Checked at the message level and
        inside every Grouped AVP the rules list (wherever it appears), in message
        order, depth first; one C pass over the bytes the decode walk validated.
        """
        cdef uint32_t found[2]
        cdef uint32_t size = <uint32_t>PyBytes_GET_SIZE(self._data)
        if not _first_repeat(self._buf, 20, size, rules, 0, self._types, 0, found):
            return None
        if found[1] > size:
            found[1] = size
        return PyBytes_FromStringAndSize(<const char*>self._buf + found[0], found[1] - found[0])

    def __repr__(self):
        return (f"<Message command_code={self.header.command_code} "
                f"flags={self.header.flags:#04x} avps={self._n}>")


cdef class AvpGroup(_AvpList):
    """The children of one Grouped AVP; shares the message bytes, copies nothing."""

    cdef _Avp _inline[8]

    def __cinit__(self):
        self._avps = self._inline
        self._cap = 8

    def __init__(self):
        raise TypeError("AvpGroup objects come from Message.group() and friends")

    def __repr__(self):
        return f"<AvpGroup avps={self._n}>"


cdef AvpGroup _make_group(_AvpList parent, _Avp* e):
    cdef AvpGroup g = AvpGroup.__new__(AvpGroup)
    cdef _Fault fault
    g._data = parent._data
    g._buf = parent._buf
    g._types = parent._types
    # The message walk already checked these bytes; this pass only indexes them.
    if _walk(g._buf, e.data, e.data + e.dlen, g._types, g, False, &fault, NULL):
        raise _fault_error(g._buf, &fault)
    return g


# --------------------------------------------------------------------------- occurrence rules

cdef enum:
    MAX_SINGLE = 64                  # single-occurrence AVPs per container: one bit each
    MAX_RULE_DEPTH = 8               # nested Grouped AVPs a rule check descends into


cdef class OccurrenceRules:
    """Which AVPs may occur at most once, per container (RFC 6733 §3.2: ``< AVP >``,
    ``{ AVP }`` and ``[ AVP ]`` without a ``*``), for :meth:`Message.first_repeated`.

    ``OccurrenceRules({None: [(code, vendor), ...], (code, vendor): [...], ...})``: the
    key None is the message level, any other key a Grouped AVP whose children the
    list constrains wherever that AVP appears. Built once; the check runs in C.
    """

    cdef uint64_t* _containers       # [i] the key of container i; 0 is the message level
    cdef Py_ssize_t* _start          # container i's keys are _singles[_start[i]:_start[i+1]]
    cdef uint64_t* _singles
    cdef Py_ssize_t _n

    def __cinit__(self, rules):
        cdef Py_ssize_t i = 1, j = 0, total = 0
        containers = [None] + [key for key in rules if key is not None]
        lists = [list(rules.get(key, ())) for key in containers]
        for keys in lists:
            if len(keys) > MAX_SINGLE:
                raise ValueError(f"at most {MAX_SINGLE} single-occurrence AVPs per container")
            total += len(keys)
        self._n = len(containers)
        self._containers = <uint64_t*>malloc(self._n * sizeof(uint64_t))
        self._start = <Py_ssize_t*>malloc((self._n + 1) * sizeof(Py_ssize_t))
        self._singles = <uint64_t*>malloc((total or 1) * sizeof(uint64_t))
        if self._containers == NULL or self._start == NULL or self._singles == NULL:
            raise MemoryError()
        self._containers[0] = 0
        for i in range(self._n):
            if i:
                self._containers[i] = _rule_key(containers[i])
            self._start[i] = j
            for key in lists[i]:
                self._singles[j] = _rule_key(key)
                j += 1
        self._start[self._n] = j

    def __dealloc__(self):
        free(self._containers)
        free(self._start)
        free(self._singles)

    cdef inline Py_ssize_t _container(self, uint64_t key) noexcept:
        cdef Py_ssize_t i
        for i in range(1, self._n):
            if self._containers[i] == key:
                return i
        return -1

    cdef inline int _single(self, Py_ssize_t container, uint64_t key) noexcept:
        cdef Py_ssize_t i, first = self._start[container]
        for i in range(first, self._start[container + 1]):
            if self._singles[i] == key:
                return <int>(i - first)
        return -1

    def __len__(self):
        return self._n


cdef uint64_t _rule_key(object key) except? 0:
    cdef uint32_t code, vendor
    code, vendor = key
    return code | (<uint64_t>vendor << 32)


cdef int _first_repeat(const uint8_t* buf, uint32_t pos, uint32_t end, OccurrenceRules rules,
                       Py_ssize_t container, TypeTable types, int depth,
                       uint32_t* found) noexcept:
    """1 with found[0:2] set to the span of the first AVP of buf[pos:end] (or of a
    container the rules list, depth first) that repeats one the rules allow once."""
    cdef uint64_t seen = 0, key
    cdef uint32_t code, length, vendor, hdr
    cdef uint8_t flags
    cdef int bit
    cdef Py_ssize_t inner
    cdef _Slot* slot
    while pos < end and end - pos >= 8:
        code = _rd32(buf + pos)
        flags = buf[pos + 4]
        length = _rd24(buf + pos + 5)
        hdr = 12 if flags & A_VENDOR else 8
        if length < hdr or length > end - pos:
            return 0  # not after a successful decode walk; never read past the container
        vendor = _rd32(buf + pos + 8) if hdr == 12 else 0
        key = code | (<uint64_t>vendor << 32)
        bit = rules._single(container, key)
        if bit >= 0:
            if seen & (<uint64_t>1 << bit):
                found[0] = pos
                found[1] = pos + _pad4(length)
                return 1
            seen |= <uint64_t>1 << bit
        if depth < MAX_RULE_DEPTH:
            inner = rules._container(key)
            if inner > 0:
                slot = types._find(code, vendor)
                if slot != NULL and slot.type == T_GROUPED and _first_repeat(
                        buf, pos + hdr, pos + length, rules, inner, types, depth + 1, found):
                    return 1
        pos += _pad4(length)
    return 0


def decode_message(buf, TypeTable types not None):
    """Validate one whole message and index its top-level AVPs (module docstring).

    Raises :class:`CodecError` with the Result-Code that answers the fault.
    """
    cdef const uint8_t* p
    cdef Py_ssize_t n
    cdef uint32_t length
    cdef Message msg
    cdef _Fault fault
    if type(buf) is not bytes:
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise TypeError(f"decode_message needs bytes, not {type(buf).__name__}")
        buf = bytes(buf)
    n = PyBytes_GET_SIZE(buf)
    p = <const uint8_t*>PyBytes_AS_STRING(buf)
    if n < 20:
        raise CodecError(
            f"message of {n} bytes is shorter than the 20-byte header",
            RC_INVALID_MESSAGE_LENGTH,
        )
    if p[0] != 1:
        raise CodecError(f"unsupported Diameter version {p[0]}", RC_UNSUPPORTED_VERSION)
    length = _rd24(p + 1)
    if length != n:
        raise CodecError(
            f"message length field {length} does not match the {n} bytes received",
            RC_INVALID_MESSAGE_LENGTH,
        )
    if n & 3:
        raise CodecError(
            f"message length {n} is not a multiple of 4", RC_INVALID_MESSAGE_LENGTH
        )
    # Reserved command flag bits are ignored by the receiver (RFC 6733 §3).
    if p[4] & C_REQUEST and p[4] & C_ERROR:
        raise CodecError("E bit set on a request", RC_INVALID_HDR_BITS)
    msg = Message.__new__(Message)
    msg._data = buf
    msg._buf = p
    msg._types = types
    msg.header = _make_header(p)
    if _walk(p, 20, <uint32_t>n, types, msg, True, &fault, msg._unknown):
        raise _fault_error(p, &fault)
    return msg


# --------------------------------------------------------------------------- encoding

ctypedef struct _Buf:
    uint8_t* p
    size_t n
    size_t cap


cdef inline int _reserve(_Buf* b, size_t extra) except -1:
    cdef size_t cap
    cdef uint8_t* grown
    if b.n + extra <= b.cap:
        return 0
    cap = b.cap * 2
    if cap < b.n + extra:
        cap = b.n + extra
    grown = <uint8_t*>realloc(b.p, cap)
    if grown == NULL:
        raise MemoryError()
    b.p = grown
    b.cap = cap
    return 0


cdef inline int _put(_Buf* b, const void* data, size_t n) except -1:
    _reserve(b, n)
    memcpy(b.p + b.n, data, n)
    b.n += n
    return 0


cdef inline int _put32(_Buf* b, uint32_t v) except -1:
    _reserve(b, 4)
    _wr32(b.p + b.n, v)
    b.n += 4
    return 0


cdef inline int _put64(_Buf* b, uint64_t v) except -1:
    _reserve(b, 8)
    _wr64(b.p + b.n, v)
    b.n += 8
    return 0


cdef str _avp_name(uint32_t code, uint32_t vendor):
    return f"AVP {code}" + (f" (vendor {vendor})" if vendor else "")


cdef object _range_error(object value, uint32_t code, uint32_t vendor, int typ):
    return ValueError(f"{_avp_name(code, vendor)}: {value} out of range for {TYPE_NAMES[typ]}")


cdef int _put_bytes_like(_Buf* b, object value) except -1:
    """Append bytes, bytearray or memoryview contents; TypeError for anything else."""
    if not isinstance(value, bytes):
        if not isinstance(value, (bytearray, memoryview)):
            raise TypeError
        value = bytes(value)
    _put(b, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    return 0


cdef int _put_utf8(_Buf* b, object value, uint32_t code, uint32_t vendor, int typ) except -1:
    cdef Py_ssize_t n
    cdef const char* s
    if isinstance(value, str):
        try:
            s = PyUnicode_AsUTF8AndSize(value, &n)
        except UnicodeEncodeError:
            raise ValueError(
                f"{_avp_name(code, vendor)}: {TYPE_NAMES[typ]} value cannot be encoded as UTF-8"
            ) from None
        _put(b, s, n)
        return 0
    if isinstance(value, (bytes, bytearray, memoryview)):
        if typ != T_OCTET_STRING:
            try:
                bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(
                    f"{_avp_name(code, vendor)}: bytes for {TYPE_NAMES[typ]} are not valid UTF-8"
                ) from None
        _put_bytes_like(b, value)
        return 0
    raise TypeError(
        f"{_avp_name(code, vendor)}: {TYPE_NAMES[typ]} needs str or bytes, "
        f"not {type(value).__name__}"
    )


cdef int64_t _signed(object value, int64_t lo, int64_t hi, uint32_t code, uint32_t vendor,
                     int typ) except? -1:
    cdef int64_t x
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(
            f"{_avp_name(code, vendor)}: {TYPE_NAMES[typ]} needs int, not {type(value).__name__}"
        )
    try:
        x = value
    except OverflowError:               # wider than 64 bits
        raise _range_error(value, code, vendor, typ) from None
    if x < lo or x > hi:
        raise _range_error(value, code, vendor, typ)
    return x


cdef uint64_t _unsigned(object value, uint64_t hi, uint32_t code, uint32_t vendor,
                        int typ) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t x
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(
            f"{_avp_name(code, vendor)}: {TYPE_NAMES[typ]} needs int, not {type(value).__name__}"
        )
    try:
        x = value
    except OverflowError:               # negative or wider than 64 bits
        raise _range_error(value, code, vendor, typ) from None
    if x > hi:
        raise _range_error(value, code, vendor, typ)
    return x


cdef double _real(object value, uint32_t code, uint32_t vendor, int typ) except? -1.0:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(
            f"{_avp_name(code, vendor)}: {TYPE_NAMES[typ]} needs float, not {type(value).__name__}"
        )
    try:
        return value
    except OverflowError:               # an int too large for a double
        raise _range_error(value, code, vendor, typ) from None


cdef int _put_address(_Buf* b, object value, uint32_t code, uint32_t vendor) except -1:
    """Address (RFC 6733 §4.3.1): 2-byte IANA family, then the address bytes."""
    cdef uint32_t family
    if isinstance(value, str):
        try:
            value = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(
                f"{_avp_name(code, vendor)}: {value!r} is not an IPv4 or IPv6 address"
            ) from None
    if isinstance(value, ipaddress.IPv4Address):
        _put(b, b"\x00\x01", 2)
        _put_bytes_like(b, value.packed)
        return 0
    if isinstance(value, ipaddress.IPv6Address):
        if value.scope_id is not None:
            raise ValueError(f"{_avp_name(code, vendor)}: {value} has a scope id")
        _put(b, b"\x00\x02", 2)
        _put_bytes_like(b, value.packed)
        return 0
    if isinstance(value, tuple) and len(value) == 2:
        family_o, data = value
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{_avp_name(code, vendor)}: Address data must be bytes")
        family = _unsigned(family_o, 0xFFFF, code, vendor, T_ADDRESS)
        if (family == 1 and len(data) != 4) or (family == 2 and len(data) != 16):
            raise ValueError(
                f"{_avp_name(code, vendor)}: {len(data)} address bytes for family {family}"
            )
        _reserve(b, 2)
        b.p[b.n] = <uint8_t>(family >> 8)
        b.p[b.n + 1] = <uint8_t>family
        b.n += 2
        _put_bytes_like(b, data)
        return 0
    raise TypeError(
        f"{_avp_name(code, vendor)}: Address needs an IP address str, an ipaddress "
        f"object or (family, bytes), not {type(value).__name__}"
    )


cdef int _put_value(_Buf* b, int typ, object value, uint32_t code, uint32_t vendor,
                    TypeTable types, int depth) except -1:
    cdef float f32
    cdef double f64
    cdef uint32_t u32
    cdef uint64_t u64
    cdef int64_t t
    if typ == T_UNSIGNED32:
        _put32(b, <uint32_t>_unsigned(value, UINT32_MAX, code, vendor, typ))
    elif typ == T_UTF8STRING or typ == T_DIAMETER_IDENTITY or typ == T_DIAMETER_URI \
            or typ == T_OCTET_STRING:
        _put_utf8(b, value, code, vendor, typ)
    elif typ == T_GROUPED:
        if isinstance(value, (list, tuple)):
            _put_avps(b, value, types, depth + 1)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            _put_bytes_like(b, value)       # already-encoded children, copied as they are
        else:
            raise TypeError(
                f"{_avp_name(code, vendor)}: Grouped needs a list of AVPs or bytes, "
                f"not {type(value).__name__}"
            )
    elif typ == T_UNSIGNED64:
        _put64(b, _unsigned(value, UINT64_MAX, code, vendor, typ))
    elif typ == T_INTEGER32 or typ == T_ENUMERATED:
        _put32(b, <uint32_t><int32_t>_signed(value, INT32_MIN, INT32_MAX, code, vendor, typ))
    elif typ == T_INTEGER64:
        _put64(b, <uint64_t>_signed(value, INT64_MIN, INT64_MAX, code, vendor, typ))
    elif typ == T_TIME:
        t = _signed(value, TIME_MIN_UNIX, TIME_END_UNIX - 1, code, vendor, typ)
        _put32(b, <uint32_t>((t + NTP_ERA0_OFFSET) & 0xFFFFFFFF))
    elif typ == T_FLOAT32:
        f64 = _real(value, code, vendor, typ)
        if isfinite(f64) and fabs(f64) > FLT_MAX:
            raise ValueError(f"{_avp_name(code, vendor)}: {value} out of range for Float32")
        f32 = <float>f64
        memcpy(&u32, &f32, 4)
        _put32(b, u32)
    elif typ == T_FLOAT64:
        f64 = _real(value, code, vendor, typ)
        memcpy(&u64, &f64, 8)
        _put64(b, u64)
    elif typ == T_ADDRESS:
        _put_address(b, value, code, vendor)
    else:
        try:
            _put_bytes_like(b, value)
        except TypeError:
            raise TypeError(
                f"{_avp_name(code, vendor)} is not in the type table: its value must be "
                f"bytes, not {type(value).__name__}"
            ) from None
    return 0


cdef int _put_avp(_Buf* b, object item, TypeTable types, int depth) except -1:
    cdef uint32_t code, vendor = 0, length, hdr, pad
    cdef int flags
    cdef size_t start
    cdef _Slot* slot
    cdef Py_ssize_t k
    if not isinstance(item, tuple):
        raise TypeError(f"an AVP must be a tuple, not {type(item).__name__}: {item!r}")
    k = len(<tuple>item)
    try:
        if k == 2:
            code = item[0]
        elif k == 3 or k == 4:
            code = item[0]
            vendor = item[1]
        else:
            raise TypeError(
                f"an AVP is (code, value), (code, vendor, value) or "
                f"(code, vendor, flags, value), not {item!r}"
            )
    except OverflowError:
        raise ValueError(f"AVP code and vendor must fit 32 bits: {item!r}") from None
    value = item[k - 1]
    slot = types._find(code, vendor)
    if k == 4:
        flags_o = item[2]
        if not isinstance(flags_o, int) or not 0 <= flags_o <= 0xFF or flags_o & A_RESERVED:
            raise ValueError(f"{_avp_name(code, vendor)}: invalid AVP flags {flags_o!r}")
        flags = flags_o
    else:
        flags = slot.flags if slot != NULL else 0
    if vendor:
        flags |= A_VENDOR
        hdr = 12
    else:
        flags &= ~A_VENDOR
        hdr = 8
    start = b.n
    _reserve(b, hdr)
    _wr32(b.p + start, code)
    if vendor:
        _wr32(b.p + start + 8, vendor)
    b.n += hdr
    _put_value(b, slot.type if slot != NULL else T_UNKNOWN, value, code, vendor, types, depth)
    if b.n - start > MAX_LENGTH:
        raise ValueError(f"{_avp_name(code, vendor)} is longer than {MAX_LENGTH} bytes")
    length = <uint32_t>(b.n - start)
    _wr32(b.p + start + 4, (<uint32_t>flags << 24) | length)
    pad = _pad4(length) - length
    if pad:
        _reserve(b, pad)
        memset(b.p + b.n, 0, pad)
        b.n += pad
    return 0


cdef int _put_avps(_Buf* b, object avps, TypeTable types, int depth) except -1:
    if depth > MAX_ENCODE_DEPTH:
        raise ValueError(f"Grouped AVPs nested deeper than {MAX_ENCODE_DEPTH} levels")
    if not isinstance(avps, (list, tuple)):
        raise TypeError(f"AVPs must be a list of tuples, not {type(avps).__name__}")
    for item in avps:
        _put_avp(b, item, types, depth)
    return 0


cdef bytes _encode(object avps, TypeTable types, bint with_header, uint32_t flags,
                   uint32_t command_code, uint32_t application_id, uint32_t hop_by_hop,
                   uint32_t end_to_end):
    cdef _Buf b
    b.p = <uint8_t*>malloc(512)
    if b.p == NULL:
        raise MemoryError()
    b.cap = 512
    b.n = 20 if with_header else 0
    try:
        _put_avps(&b, avps, types, 0)
        if with_header:
            if b.n > MAX_LENGTH:
                raise ValueError(f"message is longer than {MAX_LENGTH} bytes")
            _wr32(b.p, (1 << 24) | <uint32_t>b.n)
            _wr32(b.p + 4, (flags << 24) | command_code)
            _wr32(b.p + 8, application_id)
            _wr32(b.p + 12, hop_by_hop)
            _wr32(b.p + 16, end_to_end)
        return PyBytes_FromStringAndSize(<const char*>b.p, b.n)
    finally:
        free(b.p)


def encode_avps(avps, TypeTable types not None):
    """Encode a list of AVP tuples (see :func:`encode_message`) to padded AVP bytes."""
    return _encode(avps, types, False, 0, 0, 0, 0, 0)


def encode_message(flags, command_code, application_id, hop_by_hop, end_to_end, avps,
                   TypeTable types not None):
    """Encode a whole message (version 1).

    ``avps`` is a list of ``(code, value)``, ``(code, vendor, value)`` or
    ``(code, vendor, flags, value)`` tuples; the first two take their flags from the
    table, and the V bit always follows the vendor.  A Grouped value is a list of
    the same tuples, or bytes holding already-encoded AVPs (copied as they are, e.g.
    a raw AVP echoed inside Failed-AVP).  An AVP the table does not know needs bytes.
    """
    for name, v, hi in (("command_code", command_code, 0xFFFFFF),
                        ("application_id", application_id, 0xFFFFFFFF),
                        ("hop_by_hop", hop_by_hop, 0xFFFFFFFF),
                        ("end_to_end", end_to_end, 0xFFFFFFFF),
                        ("flags", flags, 0xFF)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be int, not {type(v).__name__}")
        if not 0 <= v <= hi:
            raise ValueError(f"{name} {v} out of range")
    if flags & C_RESERVED:
        raise ValueError(f"reserved command flag bits set in {flags:#04x}")
    if flags & C_REQUEST and flags & C_ERROR:
        raise ValueError("the E bit must not be set on a request")
    return _encode(avps, types, True, flags, command_code, application_id, hop_by_hop,
                   end_to_end)
