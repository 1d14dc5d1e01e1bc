"""The typed Python <-> Lua contract (quota_engine/store/contract.py) against the contract
header of each charging script, and its encoders and decoders against its fields.

A header is the comment block at the top of a ``.lua`` file:

    -- KEYS (...):
    --   1 ocs:acct:{P}:A               description
    -- ARGV[1], a msgpack map (...):
    --   sid     description
    --   s       the services, a list of maps:
    --     k       description                  (a child: two more spaces)
    --           a description's second line   (deeper than a child)
    -- ARGV[2]  description                     (a plain value)
    -- Returns a msgpack map (...):
    --   o       description

A field line is ``--``, its indent, the wire key and two spaces before the
description; a blank ``--`` ends a section. The test fails when a field, key or
argument is on one side only, or when an encoder or decoder disagrees with the
fields' metadata.

The account scripts (put_bucket.lua, ...) take plain values and answer a list; their
headers number them, each with the contract field it carries:

    -- ARGV: plain values (...):
    --   1 bucket_id      description
    --                    a description's second line  (deeper than the number)
    -- Returns: a list (...):                          (or "an integer", one line:
    --   1 status         "ok", "no_bucket" or ...      "--   released  description")

Every ``.lua`` file of store/lua/ but the include files is a script with a contract.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from quota_engine.accounts.errors import REFUSALS
from quota_engine.model import Outcome, ServiceGrant, Unit
from quota_engine.store import contract
from quota_engine.store.contract import (
    GRANT_WIRE,
    BalanceActionAnswer,
    BalanceActionArgs,
    BalanceArgs,
    CcrArgs,
    ChargeAnswer,
    CreditAnswer,
    CreditArgs,
    EventArgs,
    EventService,
    PutBucketAnswer,
    PutBucketArgs,
    RatedWith,
    RatingContext,
    RefundArgs,
    ReleaseIdentityAnswer,
    ReleaseIdentityArgs,
    ScriptPrice,
    SessionService,
    SetStatusAnswer,
    SetStatusArgs,
    SettleAnswer,
    SettleArgs,
)
from quota_engine.store.scripts import LUA_DIR

Tree = dict[str, "Tree"]
"""Wire keys and, for a map or a list of maps, the keys of its items."""

# ------------------------------------------------------------------ the header


@dataclass
class Header:
    keys: list[str] = field(default_factory=list)
    maps: dict[int, Tree] = field(default_factory=dict)  # ARGV[i], a msgpack map
    values: list[int] = field(default_factory=list)  # ARGV[i], plain values
    returns: Tree = field(default_factory=dict)
    argv_names: dict[int, str] = field(default_factory=dict)  # "-- ARGV: plain values"
    reply: dict[str, str] = field(default_factory=dict)  # "-- Returns: a list": name -> text
    reply_form: str | None = None  # "list" or "integer"


class HeaderError(ValueError):
    pass


_KEY_LINE = re.compile(r"^--\s+(\d+)\s+(\S+)")
_FIELD_LINE = re.compile(r"^--( +)([a-z_]+)(?: {2,}\S.*)?$")
_ARGV_MAP = re.compile(r"^-- ARGV\[(\d+)\], a msgpack map")
_ARGV_VALUE = re.compile(r"^-- ARGV\[(\d+)\] {2,}\S")
_NUMBERED_LINE = re.compile(r"^--   (\d+) ([a-z_]+)(?: {2,}(\S.*))?$")
_VALUE_LINE = re.compile(r"^--   ([a-z_]+) {2,}(\S.*)$")


def parse_header(text: str) -> Header:
    lines = []
    for line in text.splitlines():
        if not line.startswith("--") or line.startswith("-- @include"):
            break
        lines.append(line.rstrip())
    header = Header()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("-- KEYS"):
            while i < len(lines) and (m := _KEY_LINE.match(lines[i])):
                if int(m.group(1)) != len(header.keys) + 1:
                    raise HeaderError(f"KEYS out of order: {lines[i]!r}")
                header.keys.append(m.group(2))
                i += 1
        elif m := _ARGV_MAP.match(line):
            header.maps[int(m.group(1))], i = _fields(lines, i)
        elif m := _ARGV_VALUE.match(line):
            header.values.append(int(m.group(1)))
        elif line.startswith("-- Returns a msgpack map"):
            header.returns, i = _fields(lines, i)
        elif line.startswith("-- ARGV: plain values"):
            values, i = _listed(lines, i, numbered=True)
            header.argv_names = {n: name for n, (name, _) in enumerate(values, 1)}
            header.values += list(header.argv_names)
        elif line.startswith(("-- Returns: a list", "-- Returns: an integer")):
            numbered = line.startswith("-- Returns: a list")
            values, i = _listed(lines, i, numbered=numbered)
            if not numbered and len(values) != 1:
                raise HeaderError(f"an integer is one value: {line!r}")
            header.reply, header.reply_form = dict(values), "list" if numbered else "integer"
        elif line.startswith(("-- ARGV", "-- Returns")):
            raise HeaderError(f"neither a map nor a value: {line!r}")
    return header


def _fields(lines: list[str], i: int) -> tuple[Tree, int]:
    """The field list starting at ``lines[i]``, nested by indent (two spaces a level)."""
    root: Tree = {}
    stack: list[tuple[int, Tree]] = []
    last: tuple[int, Tree] | None = None  # indent and children of the last field
    while i < len(lines) and lines[i].startswith("--  "):
        line = lines[i]
        i += 1
        indent = len(line) - len(line[2:].lstrip(" ")) - 2
        if last is not None and indent > last[0] + 2:
            continue  # a description's next line
        m = _FIELD_LINE.match(line)
        if m is None:
            raise HeaderError(f"not a field line: {line!r}")
        if not stack:
            stack.append((indent, root))
        elif last is not None and indent == last[0] + 2:
            stack.append((indent, last[1]))  # the last field's children
        else:
            while stack and stack[-1][0] > indent:
                stack.pop()
            if not stack or stack[-1][0] != indent:
                raise HeaderError(f"indent of {line!r} matches no level above")
        name, parent = m.group(2), stack[-1][1]
        if name in parent:
            raise HeaderError(f"{name} twice: {line!r}")
        parent[name] = {}
        last = (indent, parent[name])
    return root, i


def _listed(lines: list[str], i: int, *, numbered: bool) -> tuple[list[tuple[str, str]], int]:
    """The values listed from ``lines[i]``: ``(name, description)`` in their order;
    ``numbered``: each line gives its position (``--   1 name  description``), checked.
    A description goes on over lines indented deeper than the value's first line."""
    found: list[tuple[str, str]] = []
    pattern = _NUMBERED_LINE if numbered else _VALUE_LINE
    while i < len(lines) and lines[i].startswith("--   "):
        line = lines[i]
        i += 1
        if m := pattern.match(line):
            if numbered and int(m.group(1)) != len(found) + 1:
                raise HeaderError(f"out of order: {line!r}")
            name, note = m.group(2, 3) if numbered else m.group(1, 2)
            found.append((name, note or ""))
        elif found and line.startswith("--    "):
            name, note = found[-1]
            found[-1] = (name, f"{note} {line[2:].strip()}")
        else:
            raise HeaderError(f"not a {'numbered' if numbered else 'value'} line: {line!r}")
    return found, i


def header_of(script: str) -> str:
    return (LUA_DIR / script).read_text(encoding="utf-8")


# ------------------------------------------------------------------ the contract side

SAMPLE = {"{P}:A": "{p:35}:a1", "{P}": "{p:35}", "<session-id>": "s1", "<n>": "7", "<period>": "2025-03-01",
          "<identity>": "msisdn:1", "<key>": "k1"}  # fmt: skip
"""What the KEYS placeholders of the headers stand for in the sample calls below."""


def _full(cls: type, **values: Any) -> Any:
    """An instance with every init field set: ``values``, else a distinct marker."""
    for f in dataclasses.fields(cls):
        if f.init:
            values.setdefault(f.name, f"<{f.name}>")
    return cls(**values)


PRICE = _full(ScriptPrice)
SERVICE_VALUES = {"price": PRICE, "usage_range": (1, 2), "reported": 99}
CALL_VALUES = {
    "account": "a1",
    "session_id": "s1",
    "request_number": 7,
    "period": "2025-03-01",
    "rated_with": RatedWith("plan", "1", "EUR"),
    "identities": ["msisdn:1"],
    "rating_context": RatingContext("4930", "20801", "internet"),
    "carried_context": RatingContext("4940", "20802", "ims"),
    "cap_floor": {"octets": 1, "seconds": 2, "events": 3},
}


def _call(cls: type, service: type | None) -> Any:
    values = dict(CALL_VALUES)
    if service is not None:
        fields = {f.name for f in dataclasses.fields(service)}
        given = {k: v for k, v in SERVICE_VALUES.items() if k in fields}
        values["services"] = [_full(service, **given)]
    names = {f.name for f in dataclasses.fields(cls)}
    return _full(cls, **{k: v for k, v in values.items() if k in names})


def _answer_map() -> dict[str, Any]:
    """Every key any answer may carry, each with a distinct value."""
    service = {"rg": 21, "si": 22, "o": "ok", "u": "octets", "g": 23, "vt": 24, "thr": 25,
               "qht": 26, "fu": True, "fa": "terminate", "ra": "http://x", "c": 27}  # fmt: skip
    return {"o": "ok", "n": 11, "dl": 12, "c": 13, "bal": 14, "records": 15, "s": [service],
            "rc": {"d": "4930"}, "cap": [["10", 17, 16]]}  # fmt: skip


@dataclass
class Spec:
    """One script's side of the contract: a sample call, the encoder of its services
    (a method of the service class) and the decoder of its answer map."""

    call: Any
    service_encoder: str | None
    decode: Callable[[Mapping[str, Any]], Any]


SPECS = {
    "ccr.lua": Spec(_call(CcrArgs, SessionService), "wire", contract.ccr_answer),
    "event.lua": Spec(_call(EventArgs, EventService), "wire_event", contract.debit_answer),
    "refund.lua": Spec(_call(RefundArgs, EventService), "wire_refund", contract.debit_answer),
    "balance.lua": Spec(_call(BalanceArgs, EventService), "wire_balance", contract.balance_answer),
    "settle.lua": Spec(_call(SettleArgs, None), None, contract.settle_answer),
}


def _wire_names(cls: type) -> dict[str, str | int | None]:
    return {f.name: f.metadata["wire"] for f in dataclasses.fields(cls) if f.init}


def _tree(value: Any) -> Tree:
    if isinstance(value, dict):
        return {key: _tree(item) for key, item in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return _tree(value[0])
    return {}


def _encoded(obj: Any, wire: Mapping[str, Any], where: str) -> list[str]:
    """Problems: a wire key without its field, or a field's value not under its key."""
    problems = []
    names = _wire_names(type(obj))
    by_key = {key: name for name, key in names.items() if key is not None}
    for key in wire:
        if key not in by_key:
            problems.append(f"{where}: the encoder writes {key}, no field names it")
    for key, name in by_key.items():
        if key not in wire:
            continue  # this script's encoder does not take that field
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value) or isinstance(value, list):
            continue  # nested: checked on its own
        if wire[key] != value:
            problems.append(f"{where}: {key} holds {wire[key]!r}, not {name} ({value!r})")
    return problems


class _Reads(dict[str, Any]):
    """An answer map that notes the keys a decoder reads."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def _decoded(spec: Spec) -> tuple[Tree, list[str], Any]:
    """The keys the decoder reads (a tree), problems with the values it decoded, and
    the decoded answer."""
    sample = _answer_map()
    items = [_Reads(item) for item in sample.pop("s")]
    top = _Reads({**sample, "s": items})
    answer = spec.decode(top)
    tree: Tree = {key: {} for key in top.read}
    problems = []
    if "s" in tree:
        tree["s"] = {key: {} for key in items[0].read}
    for name, key in _wire_names(type(answer)).items():
        if key in top.read and key != "s" and getattr(answer, name) != top[key]:
            problems.append(f"answer: {name} is {getattr(answer, name)!r}, not {key}")
    converted = {"o": Outcome.OK, "u": Unit.OCTETS, "fu": True}
    for grant in getattr(answer, "services", []):
        for name, key in GRANT_WIRE.items():
            if key in items[0].read:
                expected = converted.get(key, items[0].get(key))
                if getattr(grant, name) != expected:
                    problems.append(f"answer: s.{name} is {getattr(grant, name)!r}, not {key}")
    return tree, problems, answer


def _compare(where: str, header: Tree, ours: Tree) -> list[str]:
    problems = []
    for key in sorted(header.keys() - ours.keys()):
        problems.append(f"{where}{key}: in the header, not in the contract")
    for key in sorted(ours.keys() - header.keys()):
        problems.append(f"{where}{key}: in the contract, not in the header")
    for key in sorted(header.keys() & ours.keys()):
        problems += _compare(f"{where}{key}.", header[key], ours[key])
    return problems


def contract_problems(script: str, text: str, spec: Spec) -> list[str]:
    """Everything on which the header ``text`` of ``script`` and ``spec`` disagree."""
    header = parse_header(text)
    call = spec.call
    problems = _keys_problems(header, call)
    names = _wire_names(type(call))
    positions = sorted(key for key in names.values() if isinstance(key, int))
    if sorted(header.values) != positions:
        problems.append(f"ARGV values: the header has {header.values}, the contract {positions}")
    if positions:
        argv = call.argv()
        by_position = {key: name for name, key in names.items() if isinstance(key, int)}
        for position, name in by_position.items():
            if argv[position - 1] != getattr(call, name):
                problems.append(f"ARGV[{position}] is not {name}")
    if header.maps or hasattr(call, "wire"):
        wire = call.wire()
        problems += _encoded(call, wire, "ARGV[1]")
        service_wire: dict[str, Any] = {}
        if spec.service_encoder is not None:
            [service] = call.services
            service_wire = getattr(service, spec.service_encoder)()
            if wire["s"] != [service_wire]:
                problems.append("ARGV[1].s is not the services' encoder output")
            problems += _encoded(service, service_wire, "ARGV[1].s")
            if "p" in service_wire:
                problems += _encoded(service.price, service_wire["p"], "ARGV[1].s.p")
        problems += _compare("ARGV[1].", header.maps.get(1, {}), _tree(wire))
    tree, decode_problems, _ = _decoded(spec)
    problems += decode_problems
    problems += _compare("Returns.", header.returns, tree)
    return problems


def _keys_problems(header: Header, call: Any) -> list[str]:
    """KEYS of the header that the call's ``keys()`` does not give, or a field for KEYS
    that no key uses."""
    problems = []
    keys = call.keys()
    expected_keys = [_sample(pattern) for pattern in header.keys]
    if keys != expected_keys:
        problems.append(f"KEYS: the header says {expected_keys}, the contract gives {keys}")
    for name, key in _wire_names(type(call)).items():
        if key is None and dataclasses.replace(call, **{name: "other"}).keys() == keys:
            problems.append(f"{name}: a field for KEYS only, which no key uses")
    return problems


def _sample(pattern: str) -> str:
    for placeholder, value in SAMPLE.items():
        pattern = pattern.replace(placeholder, value)
    return pattern


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("script", sorted(SPECS))
def test_header_and_contract_agree(script):
    assert contract_problems(script, header_of(script), SPECS[script]) == []


def test_every_charging_script_has_a_spec():
    charging = {"ccr.lua", "event.lua", "refund.lua", "balance.lua", "settle.lua"}
    assert set(SPECS) == charging
    for script in charging:
        header = parse_header(header_of(script))
        assert header.keys and header.returns, script
        assert header.maps or header.values, script


def test_every_field_is_on_the_wire_of_some_script():
    """A field that no script's encoder writes (or decoder reads) is a field on the
    Python side only."""
    written: dict[type, set[str]] = {}
    for spec in SPECS.values():
        call = spec.call
        if hasattr(call, "wire"):
            written.setdefault(type(call), set()).update(call.wire())
        if spec.service_encoder is not None:
            [service] = call.services
            encoded = getattr(service, spec.service_encoder)()
            written.setdefault(type(service), set()).update(encoded)
            written.setdefault(ScriptPrice, set()).update(encoded.get("p", {}))
    read: dict[str, set[str]] = {"answer": set(), "grant": set(), "settle": set()}
    for spec in SPECS.values():
        tree, _, answer = _decoded(spec)
        read["settle" if isinstance(answer, SettleAnswer) else "answer"].update(tree)
        read["grant"].update(tree.get("s", {}))
    assert unwritten(written) == []
    assert {key for key in _wire_names(ChargeAnswer).values()} == read["answer"]
    assert {key for key in _wire_names(SettleAnswer).values()} == read["settle"]
    assert set(GRANT_WIRE.values()) == read["grant"]
    assert set(GRANT_WIRE) == {f.name for f in dataclasses.fields(ServiceGrant)}


def unwritten(written: Mapping[type, set[str]]) -> list[str]:
    problems = []
    for cls, keys in written.items():
        for name, key in _wire_names(cls).items():
            if isinstance(key, str) and key not in keys:
                problems.append(f"{cls.__name__}.{name} ({key}) is written by no encoder")
    return problems


# ------------------------------------------------------------------ the test can fail


def _tampered(script: str, after: str, line: str | None, drop: str | None = None) -> str:
    text = header_of(script)
    if drop is not None:
        assert drop in text
        text = text.replace(drop + "\n", "", 1)
    if line is not None:
        assert after in text
        text = text.replace(after + "\n", after + "\n" + line + "\n", 1)
    return text


def test_a_field_in_the_header_only_fails():
    text = _tampered("ccr.lua", "--     k       key: rating group, \"si<n>\" or \"-\"",
                     "--     zz      a field the contract does not have")  # fmt: skip
    assert contract_problems("ccr.lua", text, SPECS["ccr.lua"]) == [
        "ARGV[1].s.zz: in the header, not in the contract"
    ]
    text = _tampered("event.lua", "--   c       total cost (micro-units)", "--   zz      nothing")
    problems = contract_problems("event.lua", text, SPECS["event.lua"])
    assert problems == ["Returns.zz: in the header, not in the contract"]


def test_a_field_missing_from_the_header_fails():
    text = _tampered("ccr.lua", "", None, drop="--   dl      the session's new deadline (Unix s)")
    assert contract_problems("ccr.lua", text, SPECS["ccr.lua"]) == [
        "ARGV[1].dl: in the contract, not in the header"
    ]
    text = _tampered("refund.lua", "", None, drop="--       nc      next cost (micro-units)")
    assert contract_problems("refund.lua", text, SPECS["refund.lua"]) == [
        "ARGV[1].s.p.nc: in the contract, not in the header"
    ]
    text = _tampered("settle.lua", "", None, drop="-- ARGV[2]  now (Unix seconds)")
    assert contract_problems("settle.lua", text, SPECS["settle.lua"]) == [
        "ARGV values: the header has [1], the contract [1, 2]"
    ]


def test_a_key_on_one_side_only_fails():
    drop = (
        "--   6 ocs:open:{P}                     HASH the partition's open-session counters"
        " (open_counts.lua)"
    )
    text = _tampered("settle.lua", "", None, drop=drop)
    [problem] = contract_problems("settle.lua", text, SPECS["settle.lua"])
    assert problem.startswith("KEYS: the header says")


@dataclass(slots=True)
class _WiderService(SessionService):
    """A service with one more field, written by its encoder but in no header."""

    extra: int = field(default=0, metadata={"wire": "xx"})

    def wire(self) -> dict[str, Any]:
        return {**SessionService.wire(self), "xx": self.extra}


@dataclass(slots=True)
class _UnwrittenService(SessionService):
    """A service with one more field that its encoder forgets."""

    extra: int = field(default=0, metadata={"wire": "xx"})


def test_a_field_in_the_contract_only_fails():
    call = dataclasses.replace(
        SPECS["ccr.lua"].call, services=[_full(_WiderService, **SERVICE_VALUES)]
    )
    spec = Spec(call, "wire", contract.ccr_answer)
    assert contract_problems("ccr.lua", header_of("ccr.lua"), spec) == [
        "ARGV[1].s.xx: in the contract, not in the header"
    ]
    unused = _full(_UnwrittenService, **SERVICE_VALUES)
    assert unwritten({_UnwrittenService: set(unused.wire())}) == [
        "_UnwrittenService.extra (xx) is written by no encoder"
    ]


def test_an_encoder_that_swaps_fields_fails():
    @dataclass(slots=True)
    class Swapped(SessionService):
        def wire(self) -> dict[str, Any]:
            return {**SessionService.wire(self), "rg": self.service_identifier}

    call = dataclasses.replace(SPECS["ccr.lua"].call, services=[_full(Swapped, **SERVICE_VALUES)])
    problems = contract_problems(
        "ccr.lua", header_of("ccr.lua"), Spec(call, "wire", contract.ccr_answer)
    )
    assert problems == [
        "ARGV[1].s: rg holds '<service_identifier>', not rating_group ('<rating_group>')"
    ]


def test_header_format_errors_are_reported():
    with pytest.raises(HeaderError, match="not a field line"):
        parse_header("-- Returns a msgpack map:\n--   o description after one space\n")
    with pytest.raises(HeaderError, match="twice"):
        parse_header("-- Returns a msgpack map:\n--   o  a\n--   o  b\n")
    with pytest.raises(HeaderError, match="matches no level"):
        parse_header("-- Returns a msgpack map:\n--   o  a\n--     c  b\n--  x  c\n")
    nested = parse_header(
        "-- Returns a msgpack map:\n--   s  list:\n--     k  key\n--          more text\n--   o  x\n"
    )
    assert nested.returns == {"s": {"k": {}}, "o": {}}


# ------------------------------------------------------------------ the account scripts


@dataclass
class AccountSpec:
    """An account script's side of the contract: a sample call, a sample reply of the
    script (Redis' form: bytes and integers) and the answer it decodes to."""

    call: Any
    decode: Callable[[Any], Any]
    reply: Any
    answer: Any


ACCOUNT_SPECS = {
    "ack_records.lua": AccountSpec(
        contract.AckRecordsArgs(35, "export", ("1-0", "1-1")),
        contract.decode_ack_records,
        [2, 1],
        contract.AckRecordsAnswer(2, 1),
    ),
    "export_lease.lua": AccountSpec(
        contract.ExportLeaseArgs(35, "host:1", 15000),
        contract.decode_export_lease,
        1,
        contract.ExportLeaseAnswer(True),
    ),
    "put_bucket.lua": AccountSpec(
        PutBucketArgs("a1", "main", b"<packed>", replace=True),
        contract.decode_put_bucket,
        [b"below_reserved", 5],
        PutBucketAnswer("below_reserved", 5),
    ),
    "credit.lua": AccountSpec(
        CreditArgs("a1", "main", 10, '{"action": "credit"}', limit=99),
        contract.decode_credit,
        [b"overflow", 7],
        CreditAnswer("overflow", 7),
    ),
    "set_status.lua": AccountSpec(
        SetStatusArgs("a1", "barred"),
        contract.decode_set_status,
        [b"ok", b"active"],
        SetStatusAnswer("ok", "active"),
    ),
    "release_identity.lua": AccountSpec(
        ReleaseIdentityArgs("msisdn:1", "a1"),
        contract.decode_release_identity,
        1,
        ReleaseIdentityAnswer(True),
    ),
    "balance_action.lua": AccountSpec(
        BalanceActionArgs(
            "a1",
            "k1",
            bucket_id="main",
            amount=-3,
            fingerprint="f0",
            create=b"<packed>",
            unit="EUR",
            entry_head='{"action":"adjust"',
            ttl=60,
            limit=99,
        ),
        contract.decode_balance_action,
        [b"replay", b"f0\n{}"],
        BalanceActionAnswer("replay", "f0\n{}"),
    ),
}


def _other(value: Any) -> Any:
    """A value of the same type as ``value`` that differs from it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str | bytes | tuple):
        return value + value[:1]
    raise TypeError(f"no other value for {value!r}")


def account_contract_problems(script: str, text: str, spec: AccountSpec) -> list[str]:
    """Everything on which the header ``text`` of the account script ``script`` and
    ``spec`` disagree."""
    header = parse_header(text)
    call = spec.call
    problems = _keys_problems(header, call)
    names = _wire_names(type(call))
    by_position = {key: name for name, key in names.items() if isinstance(key, int)}
    for name, key in names.items():
        if key is not None and not isinstance(key, int):
            problems.append(f"{name}: names {key!r}, neither an ARGV position nor None")
    if header.argv_names != by_position:
        ours = dict(sorted(by_position.items()))
        problems.append(f"ARGV: the header has {header.argv_names}, the contract {ours}")
    argv = call.argv()
    if len(argv) != len(by_position):
        problems.append(f"ARGV: argv() gives {len(argv)} values for {len(by_position)} fields")
    for position, name in sorted(by_position.items()):
        changed = dataclasses.replace(call, **{name: _other(getattr(call, name))}).argv()
        moved = [n for n, (a, b) in enumerate(zip(argv, changed, strict=False), 1) if a != b]
        if moved != [position]:
            problems.append(f"ARGV[{position}]: {name} is encoded at {moved}")
    form = "integer" if isinstance(spec.reply, int) else "list"
    if header.reply_form != form:
        problems.append(f"Returns: the header says {header.reply_form}, the script answers {form}")
    fields = list(type(spec.answer)._fields)
    if list(header.reply) != fields:
        problems.append(f"Returns: the header lists {list(header.reply)}, the answer {fields}")
    decoded = spec.decode(spec.reply)
    if decoded != spec.answer or type(decoded) is not type(spec.answer):
        problems.append(f"Returns: {spec.reply!r} decodes to {decoded!r}, not {spec.answer!r}")
    documented = set(re.findall(r'"([a-z_]+)"', header.reply.get("status", "")))
    statuses = contract.ACCOUNT_SCRIPT_STATUSES.get(script, frozenset())
    if documented != statuses:
        problems.append(
            f"status: the header has {sorted(documented)}, the contract {sorted(statuses)}"
        )
    return problems


@pytest.mark.parametrize("script", sorted(ACCOUNT_SPECS))
def test_account_script_header_and_contract_agree(script):
    assert account_contract_problems(script, header_of(script), ACCOUNT_SPECS[script]) == []


def test_every_refusal_is_a_status_of_its_script():
    """accounts/errors.py's table names statuses the contract knows, of scripts it has."""
    for script, refusals in REFUSALS.items():
        assert set(refusals) <= contract.ACCOUNT_SCRIPT_STATUSES[script], script
    statusless = {"release_identity.lua", "ack_records.lua", "export_lease.lua"}
    assert set(contract.ACCOUNT_SCRIPT_STATUSES) == set(ACCOUNT_SPECS) - statusless


# ------------------------------------------------------------------ every script


def lua_files() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in LUA_DIR.glob("*.lua")}


def included(texts: Mapping[str, str]) -> set[str]:
    """The include files: those some file names in a ``-- @include`` line."""
    return {
        name for text in texts.values() for name in re.findall(r"^-- @include (\S+)", text, re.M)
    }


def scripts_without_contract(texts: Mapping[str, str]) -> list[str]:
    """The scripts of ``texts`` (file name -> text) that neither spec table covers."""
    return sorted(set(texts) - included(texts) - set(SPECS) - set(ACCOUNT_SPECS))


def test_every_script_of_the_lua_directory_has_a_contract():
    texts = lua_files()
    assert {"lib.lua", "pack_bucket.lua"} <= included(texts)
    assert scripts_without_contract(texts) == []
    assert set(SPECS) | set(ACCOUNT_SPECS) == set(texts) - included(texts)  # no stale spec
    for script in ACCOUNT_SPECS:
        header = parse_header(texts[script])
        assert header.keys and header.argv_names and header.reply, script


def test_a_script_without_a_contract_fails():
    texts = {**lua_files(), "expire.lua": "-- expire.lua: a script with no contract yet\n"}
    assert scripts_without_contract(texts) == ["expire.lua"]


def test_an_account_header_that_names_another_field_fails():
    text = header_of("credit.lua").replace("--   2 amount   ", "--   2 credit   ", 1)
    assert account_contract_problems("credit.lua", text, ACCOUNT_SPECS["credit.lua"]) == [
        "ARGV: the header has {1: 'bucket_id', 2: 'credit', 3: 'limit', 4: 'history_entry'}, "
        "the contract {1: 'bucket_id', 2: 'amount', 3: 'limit', 4: 'history_entry'}"
    ]
    text = _tampered("set_status.lua", "--                    \"no_account\": ''",
                     "--   3 changed        a value the answer does not have")  # fmt: skip
    assert account_contract_problems("set_status.lua", text, ACCOUNT_SPECS["set_status.lua"]) == [
        "Returns: the header lists ['status', 'previous', 'changed'], the answer "
        "['status', 'previous']"
    ]


def test_an_undocumented_status_fails():
    text = header_of("put_bucket.lua").replace('"created", "kept" (', '"created" (', 1)
    assert account_contract_problems("put_bucket.lua", text, ACCOUNT_SPECS["put_bucket.lua"]) == [
        "status: the header has ['below_reserved', 'created', 'no_account', 'replaced', "
        "'unit_change'], the contract ['below_reserved', 'created', 'kept', 'no_account', "
        "'replaced', 'unit_change']"
    ]


@dataclass(slots=True)
class _SwappedCredit(CreditArgs):
    """Credit arguments whose encoder swaps the bucket and the amount."""

    def argv(self) -> list[Any]:
        return [self.amount, self.bucket_id, self.limit, self.history_entry]


def test_an_encoder_or_decoder_that_swaps_values_fails():
    spec = ACCOUNT_SPECS["credit.lua"]
    swapped = _SwappedCredit(
        **{f.name: getattr(spec.call, f.name) for f in dataclasses.fields(CreditArgs)}
    )
    problems = account_contract_problems(
        "credit.lua", header_of("credit.lua"), dataclasses.replace(spec, call=swapped)
    )
    assert problems == [
        "ARGV[1]: bucket_id is encoded at [2]",
        "ARGV[2]: amount is encoded at [1]",
    ]
    spec = ACCOUNT_SPECS["set_status.lua"]
    flipped = dataclasses.replace(
        spec, decode=lambda reply: SetStatusAnswer(reply[1].decode(), reply[0].decode())
    )
    assert account_contract_problems("set_status.lua", header_of("set_status.lua"), flipped) == [
        "Returns: [b'ok', b'active'] decodes to SetStatusAnswer(status='active', "
        "previous='ok'), not SetStatusAnswer(status='ok', previous='active')"
    ]


def test_a_key_the_account_header_does_not_list_fails():
    text = _tampered("balance_action.lua", "", None,
                     drop="--   4 ocs:acct:{P}:A:topup:<key>       STRING result stored under "
                          "the idempotency key")  # fmt: skip
    problems = account_contract_problems(
        "balance_action.lua", text, ACCOUNT_SPECS["balance_action.lua"]
    )
    assert len(problems) == 1 and problems[0].startswith("KEYS: the header says")


def test_account_header_format_errors_are_reported():
    with pytest.raises(HeaderError, match="out of order"):
        parse_header("-- ARGV: plain values:\n--   2 amount  the amount\n")
    with pytest.raises(HeaderError, match="not a numbered line"):
        parse_header("-- ARGV: plain values:\n--   1 bucket id\n")
    with pytest.raises(HeaderError, match="an integer is one value"):
        parse_header("-- Returns: an integer:\n--   a  one\n--   b  two\n")
    header = parse_header(
        "-- ARGV: plain values (x):\n--   1 bucket_id  the\n--                bucket\n"
        '--   2 amount  n\n-- Returns: a list:\n--   1 status  "ok"\n'
    )
    assert header.argv_names == {1: "bucket_id", 2: "amount"} and header.values == [1, 2]
    assert (header.reply, header.reply_form) == ({"status": '"ok"'}, "list")
