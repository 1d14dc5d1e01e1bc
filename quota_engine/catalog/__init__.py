"""The product catalog: its model (:mod:`.model`), its parser and validation
(:mod:`.parser`) and the time-band clock (:mod:`.timebands`).

The names most callers need are re-exported here.
"""

from quota_engine.catalog.model import (
    HOME_ZONE,
    MAX_INCREMENT_COST,
    MISSING_DESTINATION,
    UNITS,
    Allowance,
    BandWindow,
    Catalog,
    CatalogError,
    DestinationTable,
    Plan,
    Rate,
    Reseller,
    Service,
    Tariff,
    Tier,
    TimeBand,
    WholesalePrice,
    Zone,
)
from quota_engine.catalog.parser import (
    DEMO_CATALOG_PATH,
    catalog_from_file,
    load_catalog,
    load_demo_catalog,
)

__all__ = [
    "DEMO_CATALOG_PATH",
    "HOME_ZONE",
    "MAX_INCREMENT_COST",
    "MISSING_DESTINATION",
    "UNITS",
    "Allowance",
    "BandWindow",
    "Catalog",
    "CatalogError",
    "DestinationTable",
    "Plan",
    "Rate",
    "Reseller",
    "Service",
    "Tariff",
    "Tier",
    "TimeBand",
    "WholesalePrice",
    "Zone",
    "catalog_from_file",
    "load_catalog",
    "load_demo_catalog",
]
