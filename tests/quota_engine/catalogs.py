"""Catalog data for the quota_engine tests (plain dicts; every call returns a fresh copy)."""

from __future__ import annotations

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
MIB = 1_048_576


def per_mib(rate: int) -> dict:
    return {"rate": rate, "rate_per": MIB, "first_increment": MIB, "next_increment": MIB}


def per_minute(rate: int, first: int = 60, nxt: int = 60) -> dict:
    return {"rate": rate, "rate_per": 60, "first_increment": first, "next_increment": nxt}


def base_catalog() -> dict:
    """A small valid catalog. Validation tests mutate it one problem at a time."""
    return {
        "version": "t1",
        "currency": "EUR",
        "timezone": "UTC",
        "holidays": ["2025-12-25"],
        "home_mcc_mnc": ["00101"],
        "services": [
            {"id": "data", "context": "32251@3gpp.org", "rating_groups": [10], "unit": "octets"},
            {"id": "voice", "context": "32260@3gpp.org", "rating_groups": [100], "unit": "seconds"},
            {
                "id": "sms",
                "context": "32274@3gpp.org",
                "rating_groups": [200],
                "service_identifiers": [3],
                "unit": "events",
            },
        ],
        "time_bands": [
            {"id": "peak", "days": list(WEEKDAYS), "start": "08:00", "end": "20:00"},
            {
                "id": "offpeak",
                "windows": [
                    {"days": list(WEEKDAYS), "start": "00:00", "end": "08:00"},
                    {"days": list(WEEKDAYS), "start": "20:00", "end": "24:00"},
                ],
            },
            {"id": "weekend", "days": ["sat", "sun"], "start": "00:00", "end": "24:00"},
        ],
        "zones": [
            {"id": "eu", "mcc_mnc": ["208*", "26201"]},
            {"id": "world", "mcc_mnc": ["*"]},
        ],
        "destinations": [
            {
                "id": "de",
                "prefixes": {"49": "national", "4915": "mobile"},
                "default": "international",
            }
        ],
        "plans": [
            {
                "id": "basic",
                "final_unit_action": "terminate",
                "tariffs": [
                    {
                        "service": "data",
                        "rates": [per_mib(1_000_000), {"zone": "eu", **per_mib(2_000_000)}],
                    },
                    {
                        "service": "voice",
                        "destinations": "de",
                        "rates": [
                            {"destination": "national", "band": "peak", **per_minute(100_000)},
                            {"destination": "national", **per_minute(50_000)},
                            {"destination": "international", **per_minute(500_000, 30, 6)},
                        ],
                    },
                    {
                        "service": "sms",
                        "rates": [
                            {
                                "rate": 90_000,
                                "rate_per": 1,
                                "first_increment": 1,
                                "next_increment": 1,
                            }
                        ],
                    },
                ],
                "allowances": [
                    {"id": "d1", "services": ["data"], "units": 1_073_741_824, "validity_days": 30}
                ],
            }
        ],
    }
