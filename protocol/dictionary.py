"""The Diameter dictionary: python-diameter's AVP tables as a type table for our codec.

AVP codes, names, types, vendors and constants all come from the ``python-diameter``
package; nothing here lists AVPs except the few RFC 6733 AVPs that python-diameter
types as OctetString or UTF8String where the RFC says DiameterIdentity or
DiameterURI (they encode the same way; the type decides only that we decode them
as ``str``).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any, TypeAlias

from diameter.message import constants
from diameter.message.avp import avp as _pd
from diameter.message.avp.dictionary import AVP_DICTIONARY, AVP_VENDOR_DICTIONARY

from cext import codec

__all__ = ["avp_name", "avp_type_name", "build_type_table", "constants"]

# python-diameter's AVP classes -> our type codes.  AvpEnumerated is an alias of
# AvpInteger32 there, so Enumerated AVPs come out as Integer32 (same wire format).
_CLASS_TYPES: dict[type, int] = {
    _pd.AvpOctetString: codec.OCTET_STRING,
    _pd.AvpInteger32: codec.INTEGER32,
    _pd.AvpInteger64: codec.INTEGER64,
    _pd.AvpUnsigned32: codec.UNSIGNED32,
    _pd.AvpUnsigned64: codec.UNSIGNED64,
    _pd.AvpFloat32: codec.FLOAT32,
    _pd.AvpFloat64: codec.FLOAT64,
    _pd.AvpGrouped: codec.GROUPED,
    _pd.AvpAddress: codec.ADDRESS,
    _pd.AvpTime: codec.TIME,
    _pd.AvpUtf8String: codec.UTF8STRING,
}

# RFC 6733 §4.5 types that python-diameter does not distinguish.
_TYPE_OVERRIDES: dict[tuple[int, int], int] = {
    (constants.AVP_ORIGIN_HOST, 0): codec.DIAMETER_IDENTITY,
    (constants.AVP_ORIGIN_REALM, 0): codec.DIAMETER_IDENTITY,
    (constants.AVP_DESTINATION_HOST, 0): codec.DIAMETER_IDENTITY,
    (constants.AVP_DESTINATION_REALM, 0): codec.DIAMETER_IDENTITY,
    (constants.AVP_ROUTE_RECORD, 0): codec.DIAMETER_IDENTITY,
    (constants.AVP_PROXY_HOST, 0): codec.DIAMETER_IDENTITY,
    (constants.AVP_ERROR_REPORTING_HOST, 0): codec.DIAMETER_IDENTITY,
    (constants.AVP_REDIRECT_HOST, 0): codec.DIAMETER_URI,
}


def _type_code(avp_class: type) -> int:
    """Our type code for a python-diameter AVP class (or a subclass of one)."""
    for klass in avp_class.__mro__:
        if klass in _CLASS_TYPES:
            return _CLASS_TYPES[klass]
    raise ValueError(f"python-diameter AVP class {avp_class.__name__} has no codec type")


# python-diameter's description of one AVP: "name", "type" (an AVP class), "mandatory", ...
_AvpInfo: TypeAlias = dict[str, Any]


def _entries() -> Iterator[tuple[tuple[int, int], _AvpInfo]]:
    """Every dictionary entry as ((code, vendor), info), base AVPs first."""
    for code, info in AVP_DICTIONARY.items():
        yield (code, 0), info
    for vendor, avps in AVP_VENDOR_DICTIONARY.items():
        for code, info in avps.items():
            yield (code, vendor), info


@lru_cache(maxsize=1)
def _infos() -> dict[tuple[int, int], _AvpInfo]:
    return dict(_entries())


@lru_cache(maxsize=1)
def build_type_table() -> codec.TypeTable:
    """The codec's type table for every AVP python-diameter knows (built once)."""
    table: dict[tuple[int, int], tuple[int, int]] = {}
    for key, info in _infos().items():
        type_code = _TYPE_OVERRIDES.get(key) or _type_code(info["type"])
        flags = codec.AVP_FLAG_MANDATORY if info.get("mandatory") else 0
        table[key] = (type_code, flags)
    return codec.TypeTable(table)


def avp_name(code: int, vendor: int = 0) -> str:
    """The AVP's dictionary name, e.g. ``Session-Id``; a placeholder when unknown."""
    info = _infos().get((code, vendor))
    if info is not None:
        name: str = info["name"]
        return name
    return f"AVP-{code}" + (f"-vendor-{vendor}" if vendor else "")


def avp_type_name(code: int, vendor: int = 0) -> str:
    """The RFC 6733 name of the AVP's data type, e.g. ``Unsigned32``, or ``Unknown``."""
    return codec.TYPE_NAMES[build_type_table().type_of(code, vendor)]
