# Type stub for the compiled quota_engine.charging.rating extension (source: rating.pyx).
from typing import Any

from quota_engine.catalog import Catalog

MAX_UNITS: int

class Price:
    plan_id: str | None
    service_id: str | None
    unit: str | None
    tariff_index: int
    rate_index: int
    tier_index: int
    destination: str | None
    zone: str | None
    band: str | None
    zero_rated: bool
    rate: int
    rate_per: int
    first_increment: int
    next_increment: int
    first_cost: int
    next_cost: int
    def __init__(
        self,
        rate: int,
        rate_per: int,
        first_increment: int,
        next_increment: int,
        *,
        zero_rated: bool = False,
        plan_id: str | None = None,
        service_id: str | None = None,
        unit: str | None = None,
        tariff_index: int = -1,
        rate_index: int = -1,
        tier_index: int = -1,
        destination: str | None = None,
        zone: str | None = None,
        band: str | None = None,
    ) -> None: ...
    def charge(self, units: int, continuation: bool = False) -> tuple[int, int]: ...
    def units_for_money(self, budget: int, continuation: bool = False) -> int: ...
    def round_grant(self, units: int, continuation: bool = False) -> int: ...
    def cost(self, units: int, continuation: bool = False) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...

class Rater:
    catalog: Catalog
    def __init__(self, catalog: Catalog) -> None: ...
    def price(
        self,
        plan_id: str,
        service_id: str,
        timestamp: int,
        destination: str | None = None,
        visited_mcc_mnc: str | None = None,
        period_usage: int = 0,
    ) -> Price | None: ...
    def split_by_band(
        self,
        plan_id: str,
        service_id: str,
        start: int,
        end: int,
        destination: str | None = None,
        visited_mcc_mnc: str | None = None,
        period_usage: int = 0,
    ) -> list[tuple[Price, int]] | None: ...
    def band_at(self, timestamp: int) -> str | None: ...
    def zone_of(self, visited_mcc_mnc: str | None) -> str | None: ...
    def destination_class(self, plan_id: str, service_id: str, destination: str) -> str | None: ...
