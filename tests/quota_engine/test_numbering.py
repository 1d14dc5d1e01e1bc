"""E.164 normalisation (quota_engine.numbering): every address form a network element
sends, in a German plan (+49, national prefix 0, international prefix 00), a North
American one (+1, 1, 011), one without national prefix and without a plan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quota_engine.numbering import E164_MAX_DIGITS, NO_PLAN, NumberingPlan, e164

DE = NumberingPlan("49", "0", "00")
NANP = NumberingPlan("1", "1", "011")
IT = NumberingPlan("39", "", "00")  # Italy: no trunk prefix, the 0 is part of the number


@pytest.mark.parametrize(
    ("address", "digits"),
    [
        # already E.164
        ("+4930123456", "4930123456"),
        ("tel:+4930123456", "4930123456"),
        ("tel:+49-30-123456", "4930123456"),
        ("tel:+49.30.(123)456", "4930123456"),
        ("TEL:+49 30 123456", "4930123456"),
        ("tel:+4930123456;ext=12", "4930123456"),
        ("sip:+4930123456@ims.example;user=phone", "4930123456"),
        ("sips:+4930123456@ims.example:5061;user=phone", "4930123456"),
        ("sip:%2B4930123456@ims.example;user=phone", "4930123456"),  # percent-encoded +
        ("sip:+49-30-123456;isub=1@ims.example;user=phone", "4930123456"),
        # international prefix
        ("004930123456", "4930123456"),
        ("00 33 1 23 45 67 89", "33123456789"),
        ("tel:004930123456;phone-context=ims.example", "4930123456"),
        ("sip:00447700900123@ims.example;user=phone", "447700900123"),
        # national prefix: country code + the rest
        ("030123456", "4930123456"),
        ("01701234567", "491701234567"),
        ("0170 123 45 67", "491701234567"),
        ("(030) 123-456", "4930123456"),
        ("tel:030123456;phone-context=ims.mnc001.mcc001.3gppnetwork.org", "4930123456"),
        ("tel:030123456;phone-context=+49", "4930123456"),
        ("tel:01701234567;phone-context=+33", "331701234567"),  # the context's country
        ("sip:030123456;phone-context=+49@ims.example;user=phone", "4930123456"),
        ("sip:030123456@ims.example;user=phone", "4930123456"),
        ("sip:030123456@ims.example", "4930123456"),
        # no prefix: as it is (E.164 without "+", or a short code)
        ("4930123456", "4930123456"),
        ("491701234567", "491701234567"),
        ("11880", "11880"),
        ("112", "112"),
        ("tel:11880;phone-context=+49", "11880"),
        # no number
        (None, None),
        ("", None),
        ("   ", None),
        ("+", None),
        ("00", None),
        ("0", None),
        ("+0301234", None),  # no country code starts with 0
        ("000301234", None),
        ("+" + "4" * 16, None),  # more than 15 digits
        ("0" + "4" * 14, None),  # 49 + 14 digits: 16
        ("sip:alice@ims.example", None),
        ("sip:ims.example", None),
        ("tel:*100#", None),
        ("12a", None),
        ("٣٣", None),  # digits, but not ASCII ones
        ("mailto:alice@example.net", None),
    ],
)
def test_german_plan(address, digits):
    assert e164(address, DE) == digits


@pytest.mark.parametrize(
    ("address", "digits"),
    [
        ("12125550100", "12125550100"),  # 1 + area code: national prefix 1, country code 1
        ("2125550100", "2125550100"),  # without the prefix: as it is
        ("01144207946000", "44207946000"),
        ("+12125550100", "12125550100"),
        ("011", None),
        ("tel:2125550100;phone-context=+1", "2125550100"),
    ],
)
def test_north_american_plan(address, digits):
    assert e164(address, NANP) == digits


def test_the_longer_prefix_is_tried_first():
    # international prefix 00 starts with the national prefix 0
    assert e164("0033123", DE) == "33123"
    # and the other way round: national 00 (hypothetical), international 0
    plan = NumberingPlan("7", "00", "0")
    assert (e164("00123", plan), e164("0123", plan)) == ("7123", "123")


def test_a_plan_without_national_prefix_takes_national_numbers_as_they_are():
    assert e164("0612345678", IT) == "0612345678"
    assert e164("00390612345678", IT) == "390612345678"


@pytest.mark.parametrize(
    ("address", "digits"),
    [
        ("030123", "030123"),  # no country code: national numbers as they are
        ("0049301234", "49301234"),
        ("TEL:+1 (555) 0100", "15550100"),
        ("tel:030123;phone-context=+49", "4930123"),  # the context knows the country
        ("0", "0"),
    ],
)
def test_without_a_country_code(address, digits):
    assert e164(address) == digits
    assert e164(address, NO_PLAN) == digits


@pytest.mark.parametrize(
    "fields",
    [
        {"country_code": "049"},
        {"country_code": "4949"},
        {"country_code": "+49"},
        {"national_prefix": "x"},
        {"international_prefix": "00000"},
        {"national_prefix": "0", "international_prefix": "0"},
    ],
)
def test_a_bad_plan_is_refused(fields):
    with pytest.raises(ValueError):
        NumberingPlan(**fields)


@given(st.text(max_size=40))
def test_any_text_gives_digits_or_none(text):
    for plan in (DE, NANP, IT, NO_PLAN):
        digits = e164(text, plan)
        assert digits is None or (
            digits.isdigit() and digits.isascii() and 1 <= len(digits) <= E164_MAX_DIGITS
        )


@given(st.from_regex(r"[1-9][0-9]{6,13}", fullmatch=True))
def test_every_form_of_one_number_gives_the_same_digits(number):
    national = number[2:]
    forms = [f"+{number}", f"00{number}", f"tel:+{number}", f"sip:+{number}@ims;user=phone"]
    if number.startswith("49") and national[0] != "0":  # a national number never starts with 0
        forms += [f"0{national}", f"tel:0{national};phone-context=+49"]
    assert {e164(form, DE) for form in forms} == {number}
