"""How the documents write amounts, dates, rates and quantities, per the account's locale.

Money stays integer micro-units everywhere before this module; here, and only for
display, an amount becomes a :class:`~decimal.Decimal` built from the integer (never a
float), which Babel writes the locale's way: ``1.234,56 €`` for ``de_DE``, ``€1,234.56``
for ``en_GB``. An invoice's amounts are whole minor units and are written with the
currency's digits; a rated record's exact charge may have more (``0.0125``), and keeps
them (never rounded here: the line it is on is rounded once, on the invoice).
Instants are Unix seconds shown in the catalog's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_time
from babel.numbers import NumberPattern, format_decimal, format_percent, parse_pattern

from quota_engine.money import MICRO_DIGITS

__all__ = ["Formatter", "micro_decimal"]

_KIB = 1024


def micro_decimal(micro: int) -> Decimal:
    """``micro`` micro-units as an exact Decimal of currency units (``1_500_000`` -> 1.5)."""
    if type(micro) is not int:
        raise TypeError(f"amounts are int micro-units, got {type(micro).__name__}")
    return Decimal(micro).scaleb(-MICRO_DIGITS)


@dataclass(frozen=True, slots=True)
class Formatter:
    """Writes the values of one document: ``locale`` (``de_DE``), the invoice's
    ``currency`` and its ``minor_digits``, instants in ``zone``."""

    locale: Locale
    currency: str
    minor_digits: int
    zone: ZoneInfo

    @classmethod
    def of(cls, locale: str, currency: str, minor_digits: int, zone: ZoneInfo) -> Formatter:
        return cls(Locale.parse(locale), currency, minor_digits, zone)

    def _pattern(self, most_digits: int) -> NumberPattern:
        """The locale's currency pattern with the invoice's digits (Babel's CLDR data
        has 2 for most currencies, whatever the invoice was rounded to)."""
        pattern = parse_pattern(self.locale.currency_formats["standard"].pattern)
        pattern.frac_prec = (self.minor_digits, most_digits)
        return pattern

    def money(self, micro: int) -> str:
        """An amount of the invoice (whole minor units): ``1.234,56 €``."""
        value = micro_decimal(micro)
        if value != value.quantize(Decimal(1).scaleb(-self.minor_digits)):
            raise ValueError(f"{micro} micro-units is not a whole number of minor units")
        written: str = self._pattern(self.minor_digits).apply(
            value, self.locale, currency=self.currency, currency_digits=False
        )
        return written

    def exact_money(self, micro: int) -> str:
        """A rated record's charge: the currency's digits, more when it has them."""
        written: str = self._pattern(MICRO_DIGITS).apply(
            micro_decimal(micro), self.locale, currency=self.currency, currency_digits=False
        )
        return written

    def rate(self, rate_ppm: int) -> str:
        """A tax rate in parts per million: ``19 %`` (``de_DE``), ``19%`` (``en_GB``)."""
        return format_percent(
            Decimal(rate_ppm).scaleb(-6), locale=self.locale, decimal_quantization=False
        )

    def _instant(self, seconds: int) -> datetime:
        return datetime.fromtimestamp(seconds, self.zone)

    def date(self, seconds: int) -> str:
        """``02.12.2026`` (``de_DE``), ``2 Dec 2026`` (``en_GB``)."""
        return format_date(self._instant(seconds), "medium", locale=self.locale)

    def short_date(self, seconds: int) -> str:
        return format_date(self._instant(seconds), "short", locale=self.locale)

    def time(self, seconds: int) -> str:
        return format_time(self._instant(seconds), "HH:mm:ss", locale=self.locale)

    def number(self, value: int | Decimal) -> str:
        return format_decimal(value, locale=self.locale)

    def quantity(self, amount: int, unit: str | None) -> str:
        """A used quantity: seconds as ``1:02:05`` or ``2:05``, octets in KB/MB/GB
        (binary multiples, two decimals), events and the rest as a count."""
        if unit == "seconds":
            hours, rest = divmod(amount, 3600)
            minutes, seconds = divmod(rest, 60)
            return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
        if unit == "octets":
            for size, name in ((_KIB**3, "GB"), (_KIB**2, "MB"), (_KIB, "KB")):
                if amount >= size:
                    value = (Decimal(amount) / size).quantize(Decimal("0.01"))
                    return f"{format_decimal(value, '#,##0.00', locale=self.locale)} {name}"
            return f"{self.number(amount)} B"
        if unit == "events":
            return self.number(amount)
        if unit == "days":
            return f"{self.number(amount)} d"
        return self.number(amount) if unit is None else f"{self.number(amount)} {unit}"
