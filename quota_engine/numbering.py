"""Telephone numbers to E.164 digits: the called party, the SMS recipient, the subscriber.

Rating matches destinations by E.164 prefix (docs/catalog.md), but network elements
send numbers in many forms (3GPP TS 32.299 Called-Party-Address, Requested-Party-Address,
Recipient-Address, Subscription-Id): ``tel:`` URIs (RFC 3966), ``sip:``/``sips:`` URIs
whose user part is a number (RFC 3261 ``user=phone``), or bare digits, each in
international or national format. :func:`e164` turns all of them into E.164 digits
without ``+`` (``4930123456``) with the operator's :class:`NumberingPlan`:

1. the number is taken out of its URI: ``tel:<number>;params``, the user part of
   ``sip:<user>@host;params`` (percent-decoded), else the value as it is; RFC 3966
   visual separators (``-``, ``.``, ``(``, ``)``) and spaces are dropped;
2. ``+<digits>`` is in E.164 already;
3. ``<international prefix><digits>`` (``00`` 49 30...) is E.164 without the prefix;
4. ``<national prefix><digits>`` (``0`` 30...) is the country code plus the digits
   (``49`` 30...), when a country code is known: the one of a ``phone-context=+<cc>``
   parameter, else the plan's;
5. any other digits are taken as they are: an E.164 number written without ``+`` (the
   usual form of an MSISDN in Subscription-Id and SMS addresses) or a short code
   (``112``, ``11880``), which gets no country code.

The longer of the two prefixes is tried first (``00`` before ``0``). Without a country
code, national-format numbers are taken as they are (``030123``). Anything else
(letters, ``*`` and ``#`` service codes, a SIP user that is a name, more than 15
digits, E.164's limit, an international number starting with ``0``, a prefix alone)
is no number: ``None``.
The caller decides what a request without a number gets (docs/catalog.md, "A request
without a destination").

Pure and dependency-free; the plan comes from the ``[numbering]`` settings
(docs/configuration.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["E164_MAX_DIGITS", "NO_PLAN", "NumberingPlan", "e164"]

E164_MAX_DIGITS = 15
"""ITU-T E.164: at most 15 digits, country code included."""

_COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,2}")
_PREFIX = re.compile(r"[0-9]{0,4}")
_SEPARATORS = str.maketrans("", "", "-.() ")


@dataclass(frozen=True, slots=True)
class NumberingPlan:
    """The home network's numbering plan (ITU-T E.164, E.123).

    ``country_code`` is the home country code (``"49"``), ``""`` when unknown: then
    numbers in national format are taken as they are. ``national_prefix`` (trunk
    prefix, ``"0"`` in most of Europe, ``"1"`` in North America) and
    ``international_prefix`` (``"00"``, ``"011"`` in North America) are what a
    subscriber dials before a national or an international number; ``""``: none.
    """

    country_code: str = ""
    national_prefix: str = "0"
    international_prefix: str = "00"

    def __post_init__(self) -> None:
        if self.country_code and not _COUNTRY_CODE.fullmatch(self.country_code):
            raise ValueError(f"country code must be 1 to 3 digits, got {self.country_code!r}")
        for name in ("national_prefix", "international_prefix"):
            if not _PREFIX.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} must be up to 4 digits, got {getattr(self, name)!r}")
        if self.national_prefix and self.national_prefix == self.international_prefix:
            raise ValueError("national_prefix and international_prefix must differ")

    def digits(self, number: str, country_code: str | None = None) -> str | None:
        """E.164 digits of ``number`` (ASCII digits, no ``+``) dialled in this plan,
        in the country ``country_code`` (default: the plan's); ``None`` when the
        result is not an E.164 number."""
        cc = self.country_code if country_code is None else country_code
        international, national = self.international_prefix, self.national_prefix
        if len(national) > len(international):
            if national and cc and number.startswith(national):
                return _national(cc, number[len(national) :])
            if international and number.startswith(international):
                return _international(number[len(international) :])
        else:
            if international and number.startswith(international):
                return _international(number[len(international) :])
            if national and cc and number.startswith(national):
                return _national(cc, number[len(national) :])
        return number if len(number) <= E164_MAX_DIGITS else None  # as it is


NO_PLAN = NumberingPlan()
"""No home country code: national-format numbers are taken as they are."""


def _international(digits: str) -> str | None:
    """``digits`` when they can be an E.164 number: 1 to 15 digits, the first not 0
    (no country code starts with 0)."""
    if not digits or len(digits) > E164_MAX_DIGITS or digits[0] == "0":
        return None
    return digits


def _national(country_code: str, digits: str) -> str | None:
    """The E.164 number of national ``digits`` (what follows the national prefix)."""
    if not digits or len(country_code) + len(digits) > E164_MAX_DIGITS:
        return None
    return country_code + digits


def e164(address: str | None, plan: NumberingPlan = NO_PLAN) -> str | None:
    """The E.164 digits of a number, ``tel:`` or ``sip:`` URI, or ``None`` when it
    holds no telephone number (see the module docstring)."""
    if not address:
        return None
    if address.isdigit() and address.isascii():  # the common case: digits only
        return plan.digits(address)
    number, context = _number_and_context(address.strip())
    number = number.translate(_SEPARATORS)
    if number.startswith("+"):
        digits = number[1:]
        return _international(digits) if digits.isdigit() and digits.isascii() else None
    if not (number.isdigit() and number.isascii()):
        return None
    country_code = None
    if context.startswith("+"):  # RFC 3966: a local number valid in country <cc>
        context_digits = context[1:].translate(_SEPARATORS)
        if context_digits.isdigit() and context_digits.isascii():
            country_code = context_digits
    return plan.digits(number, country_code)


def _number_and_context(value: str) -> tuple[str, str]:
    """The telephone-subscriber part of a URI (or bare value) and its phone-context."""
    scheme = value[:5].lower()
    if scheme.startswith("tel:"):
        subscriber = value[4:]
    elif scheme.startswith(("sip:", "sips:")):
        rest = value.split(":", 1)[1]
        if "@" not in rest:
            return "", ""  # a SIP URI without user part: a host, not a number
        user = rest.split("@", 1)[0].split(":", 1)[0]  # user[:password]
        subscriber = unquote(user)
    else:
        subscriber = value
    number, _, parameters = subscriber.partition(";")
    context = ""
    for parameter in parameters.split(";") if parameters else ():
        name, _, text = parameter.partition("=")
        if name.strip().lower() == "phone-context":
            context = text.strip()
    return number.strip(), context
