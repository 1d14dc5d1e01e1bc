"""Rated records as the Lua scripts write them (msgpack maps), numbered: record ``i`` has
stream entry id ``entry_id(i)`` and record id ``record_id(i)``, so a test knows which
record a segment entry is."""

from __future__ import annotations

from typing import Any

import msgpack

BASE_MS = 1_764_547_200_000
ACCOUNTS = 7


def entry_id(i: int) -> str:
    return f"{BASE_MS + i}-0"


def record_id(i: int) -> str:
    return f"pgw.example;1764547200;{i};1;10"


def record_map(i: int, *, account: str | None = None, end: int | None = None) -> dict[str, Any]:
    return {
        "id": record_id(i),
        "account": account or f"acct-{i % ACCOUNTS}",
        "identities": [f"msisdn:4917000{i:05d}"],
        "session": f"pgw.example;1764547200;{i}",
        "request": 1,
        "peer": "pgw.example",
        "context": "32251@3gpp.org",
        "service": "data",
        "rating_group": 10,
        "unit": "octets",
        "start": 1_764_547_200 + i,
        "end": 1_764_547_200 + i if end is None else end,
        "used": {"octets": 1000 + i},
        "charged": 1_250_000 + i,
        "allowances": {},
        "money": {"main": 1_250_000 + i},
        "price": "prepaid-basic:data:0:1:-1",
        "catalog": "demo-1",
        "zone": "home",
        "band": "weekday",
        "zero_rated": False,
        "cause": "normal",
        "currency": "EUR",
    }


def record_bytes(i: int, **fields: Any) -> bytes:
    return msgpack.packb(record_map(i, **fields))
