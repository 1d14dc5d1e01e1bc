"""A realistic rated record (every field of docs/records.md) for the record benchmarks."""

from __future__ import annotations

import msgpack

TARIFF = {
    "plan": "prepaid-basic", "service": "data", "tariff_index": 0, "rate_index": 1,
    "tier_index": -1, "rate": 2_000_000, "rate_per": 1_048_576,
    "first_increment": 1_048_576, "next_increment": 1_048_576,
    "first_cost": 2_000_000, "next_cost": 2_000_000,
}  # fmt: skip


def sample_record(i: int) -> bytes:
    """Record ``i``: a data session's, of one of 100,000 accounts, about 700 bytes."""
    return msgpack.packb({
        "id": f"pgw{i % 8}.operator.net;1764547200;{i};2;10", "account": f"acct-{i % 100_000}",
        "identities": [f"msisdn:4917{i:08d}"], "session": f"pgw{i % 8}.operator.net;1764547200;{i}",
        "request": 2, "peer": f"pgw{i % 8}.operator.net", "context": "32251@3gpp.org",
        "service": "data", "rating_group": 10, "service_identifier": None, "unit": "octets",
        "start": 1_764_547_200 + i, "end": 1_764_547_260 + i, "used": {"octets": 7_345_032},
        "charged": 6_000_000, "allowances": {"data-1gb": 5_242_880}, "money": {"main": 6_000_000},
        "price": "prepaid-basic:data:0:1:-1", "tariff": TARIFF, "catalog": "demo-1",
        "zone": "eu", "destination": None, "band": "weekday", "zero_rated": False,
        "cause": "normal", "currency": "EUR", "capped_from": None,
    })  # fmt: skip
