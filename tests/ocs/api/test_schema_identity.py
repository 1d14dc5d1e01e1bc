"""The OpenAPI identity pattern and the store's identity check accept the same strings:
what the document allows is accepted, what the store refuses the document forbids."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.api import schema
from quota_engine.accounts.model import identity_problem

PATTERN = schema._ecma(schema.IDENTITY_PATTERN)
MAX = schema.IDENTITY["maxLength"]


def allowed(value: str) -> bool:
    return len(value) <= MAX and PATTERN.search(value) is not None


@settings(max_examples=300, deadline=None)
@given(st.from_regex(PATTERN, fullmatch=True))
def test_every_identity_the_pattern_generates_is_accepted(value):
    if len(value) <= MAX:
        assert identity_problem(value) is None, value


_PIECES = st.sampled_from(
    ["msisdn:", "imsi:", "sip:", "sips:", "nai:", "tel:", "4917", "0", "1", "@", "a", ".", "-",
     ":", ";", " ", "\n", "example.net", "5060", "x" * 250,
     "\x1d", "\x85", "\ufeff", "\u3000", "\u2028", "\xa0", "\x00", "\U0001f600"]
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.lists(_PIECES, max_size=8).map("".join) | st.text(max_size=40))
def test_the_pattern_and_the_store_agree(value):
    assert allowed(value) == (identity_problem(value) is None), repr(value)


def test_whitespace_means_what_python_means():
    for space in ("\x1c", "\x1d", "\x1f", "\x85", "\u3000", "\t"):
        value = f"nai:a{space}b@realm"
        assert not allowed(value) and identity_problem(value) is not None, repr(space)
    assert allowed("nai:a\ufeffb@realm") and identity_problem("nai:a\ufeffb@realm") is None
    assert "\\s" not in schema.IDENTITY_PATTERN  # ECMA's \s is another set


def test_examples():
    for good in ("msisdn:491700000001", "imsi:262011234567890", "sip:sip:alice@example.net",
                 "sip:sips:ims.example.net:5061", "nai:user@realm.example"):  # fmt: skip
        assert allowed(good) and identity_problem(good) is None
    for bad in ("msisdn:12", "msisdn:491700000001\n", "imsi:1", "phone:1", "nai:nobody", ""):
        assert not allowed(bad) and identity_problem(bad) is not None
