"""Scenarios: what traffic ``ocs-loadtest run`` offers, read from a TOML file.

A scenario names the services to drive and their share of the CCR traffic, how each
session looks (updates per session, usage per update, think time) and the test
subscribers to provision. Every key is optional; :data:`DEFAULT_SCENARIO` is the
built-in mix (data 70 %, voice 20 %, SMS 10 % of the CCRs) on the demo catalog's
services. The format is documented in docs/loadtest.md; ``loadtest/scenarios/`` holds
examples.

Ranges (``updates``, ``usage``, ``think_time``) are a number or ``[low, high]``: a
value is drawn uniformly from the range for each session (``updates``) or each request
(``usage``, ``think_time``).
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

SERVICES = ("data", "voice", "sms")

__all__ = [
    "DEFAULT_SCENARIO",
    "SERVICES",
    "DataService",
    "Range",
    "RunDefaults",
    "Scenario",
    "ScenarioError",
    "SmsService",
    "Subscribers",
    "VoiceService",
    "load_scenario",
    "scenario_from_dict",
]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid scenario:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True, slots=True)
class Range:
    """A closed range of numbers; ``draw`` picks uniformly (integers stay integers)."""

    low: float
    high: float

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def draw(self, rng: random.Random) -> float:
        if self.low == self.high:
            return self.low
        return rng.uniform(self.low, self.high)

    def draw_int(self, rng: random.Random) -> int:
        low, high = int(self.low), int(self.high)
        return low if low == high else rng.randint(low, high)

    def to_json(self) -> list[float]:
        return [self.low, self.high]


@dataclass(frozen=True, slots=True)
class DataService:
    """PS data sessions (Gy, TS 32.251): CCR-I, ``updates`` x CCR-U, CCR-T."""

    context: str = "32251@3gpp.org"
    rating_group: int = 10
    updates: Range = Range(2, 4)
    usage: Range = Range(65_536, 1_048_576)  # CC-Total-Octets per CCR-U and in the CCR-T
    think_time: Range = Range(0.5, 1.5)
    apn: str = "internet"
    visited_mcc_mnc: str = "00101"  # 3GPP-SGSN-MCC-MNC; "" leaves it out

    @property
    def requests_per_session(self) -> float:
        return 2 + self.updates.mean


@dataclass(frozen=True, slots=True)
class VoiceService:
    """IMS voice sessions (Ro, TS 32.260): CCR-I, ``updates`` x CCR-U, CCR-T."""

    context: str = "32260@3gpp.org"
    rating_group: int = 100
    updates: Range = Range(1, 3)
    usage: Range = Range(20, 60)  # CC-Time seconds per CCR-U and in the CCR-T
    think_time: Range = Range(0.5, 1.5)
    called_parties: tuple[str, ...] = ("tel:+4930123456", "tel:+491701234567")

    @property
    def requests_per_session(self) -> float:
        return 2 + self.updates.mean


@dataclass(frozen=True, slots=True)
class SmsService:
    """SMS events (Ro, TS 32.274): one CCR-Event with DIRECT_DEBITING."""

    context: str = "32274@3gpp.org"
    rating_group: int = 200
    recipients: tuple[str, ...] = ("+491701234567", "+4930123456")

    @property
    def requests_per_session(self) -> float:
        return 1.0


@dataclass(frozen=True, slots=True)
class Subscribers:
    """The test subscribers ``run`` provisions (one account and MSISDN each)."""

    count: int = 1000
    account_prefix: str = "loadtest-"
    msisdn_prefix: str = "4915990"
    msisdn_digits: int = 12
    kind: str = "prepaid"
    plan: str = "prepaid-basic"
    currency: str = "EUR"
    balance: int = 1_000_000_000_000  # micro-units: 1,000,000 EUR each

    def account_id(self, index: int) -> str:
        return f"{self.account_prefix}{index:06d}"

    def msisdn(self, index: int) -> str:
        return self.msisdn_prefix + str(index).zfill(self.msisdn_digits - len(self.msisdn_prefix))


@dataclass(frozen=True, slots=True)
class RunDefaults:
    """Defaults for ``run`` flags; a flag given on the command line wins."""

    rate: float = 100.0
    duration: float = 10.0
    connections: int = 2
    workers: int = 1
    timeout: float = 5.0
    arrival: str = "uniform"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str = "default"
    mix: dict[str, float] = field(default_factory=lambda: {"data": 70, "voice": 20, "sms": 10})
    data: DataService = DataService()
    voice: VoiceService = VoiceService()
    sms: SmsService = SmsService()
    subscribers: Subscribers = Subscribers()
    run: RunDefaults = RunDefaults()

    def service(self, name: str) -> DataService | VoiceService | SmsService:
        spec: DataService | VoiceService | SmsService = getattr(self, name)
        return spec

    @property
    def shares(self) -> dict[str, float]:
        """Each service's share of the CCRs (0..1), services with weight 0 left out."""
        total = sum(self.mix.values())
        return {name: weight / total for name, weight in self.mix.items() if weight > 0}

    def session_rates(self, ccr_rate: float) -> dict[str, float]:
        """Sessions (or SMS events) per second per service at ``ccr_rate`` CCR/s."""
        return {
            name: ccr_rate * share / self.service(name).requests_per_session
            for name, share in self.shares.items()
        }

    def to_json(self) -> dict[str, Any]:
        def plain(value: object) -> object:
            if isinstance(value, Range):
                return value.to_json()
            if isinstance(value, tuple):
                return list(value)
            return value

        out: dict[str, Any] = {"name": self.name, "mix": dict(self.mix)}
        for section in (*SERVICES, "subscribers", "run"):
            obj = getattr(self, section)
            out[section] = {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}
        return out


DEFAULT_SCENARIO = Scenario()

_RANGES = {"updates", "usage", "think_time"}
_INT_RANGES = {"updates", "usage"}
_TUPLES = {"called_parties", "recipients"}
_SECTIONS: dict[str, type] = {
    "data": DataService,
    "voice": VoiceService,
    "sms": SmsService,
    "subscribers": Subscribers,
    "run": RunDefaults,
}


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario TOML file; raises :class:`ScenarioError` naming each bad key."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        raise ScenarioError([f"{path}: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([f"{path}: {exc}"]) from None
    return scenario_from_dict(document, default_name=path.stem)


def scenario_from_dict(document: dict[str, Any], default_name: str = "custom") -> Scenario:
    problems: list[str] = []
    known = {"name", "mix", *_SECTIONS}
    for key in document:
        if key not in known:
            problems.append(f"{key}: unknown section (known: {', '.join(sorted(known))})")
    scenario = DEFAULT_SCENARIO
    name = document.get("name", default_name)
    if not isinstance(name, str):
        problems.append("name: must be a string")
        name = default_name
    mix = dict(scenario.mix)
    raw_mix = document.get("mix")
    if raw_mix is not None:
        if not isinstance(raw_mix, dict):
            problems.append("mix: must be a table of service = weight")
        else:
            mix = {}
            for service, weight in raw_mix.items():
                if service not in SERVICES:
                    problems.append(
                        f"mix.{service}: unknown service (known: {', '.join(SERVICES)})"
                    )
                elif isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                    problems.append(f"mix.{service}: must be a number >= 0")
                else:
                    mix[service] = float(weight)
            if not problems and sum(mix.values()) <= 0:
                problems.append("mix: at least one service needs a weight above 0")
    sections = {}
    for section, cls in _SECTIONS.items():
        raw = document.get(section, {})
        if not isinstance(raw, dict):
            problems.append(f"{section}: must be a table")
            continue
        sections[section] = _section(section, cls, getattr(scenario, section), raw, problems)
    if problems:
        raise ScenarioError(problems)
    result = replace(scenario, name=name, mix=mix, **sections)
    problems = validate(result)
    if problems:
        raise ScenarioError(problems)
    return result


def _section(name: str, cls: type, default: Any, raw: dict[str, Any], problems: list[str]) -> Any:
    names = {f.name: f for f in fields(cls)}
    values: dict[str, object] = {}
    for key, value in raw.items():
        where = f"{name}.{key}"
        if key not in names:
            problems.append(f"{where}: unknown key (known: {', '.join(sorted(names))})")
            continue
        current = getattr(default, key)
        if key in _RANGES:
            parsed = _range(where, value, key in _INT_RANGES, problems)
            if parsed is not None:
                values[key] = parsed
        elif key in _TUPLES:
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, str) and v for v in value)
            ):
                problems.append(f"{where}: must be a non-empty list of strings")
            else:
                values[key] = tuple(value)
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                problems.append(f"{where}: must be true or false")
            else:
                values[key] = value
        elif isinstance(current, int) and not isinstance(current, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{where}: must be an integer")
            else:
                values[key] = value
        elif isinstance(current, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{where}: must be a number")
            else:
                values[key] = float(value)
        elif isinstance(current, str):
            if not isinstance(value, str):
                problems.append(f"{where}: must be a string")
            else:
                values[key] = value
    return replace(default, **values)


def _range(where: str, value: Any, integer: bool, problems: list[str]) -> Range | None:
    kind: type | tuple[type, ...] = int if integer else (int, float)
    if isinstance(value, list):
        if len(value) != 2 or not all(
            isinstance(v, kind) and not isinstance(v, bool) for v in value
        ):
            problems.append(f"{where}: must be a number or [low, high]")
            return None
        low, high = value
    elif isinstance(value, kind) and not isinstance(value, bool):
        low = high = value
    else:
        problems.append(
            f"{where}: must be {'an integer' if integer else 'a number'} or [low, high]"
        )
        return None
    if low < 0 or high < low:
        problems.append(f"{where}: needs 0 <= low <= high, got [{low}, {high}]")
        return None
    return Range(low, high)


def validate(scenario: Scenario) -> list[str]:
    """Problems of a scenario's values (beyond their types)."""
    problems = []
    subs = scenario.subscribers
    if subs.count < 1:
        problems.append("subscribers.count: must be at least 1")
    if not subs.msisdn_prefix.isdigit():
        problems.append("subscribers.msisdn_prefix: must be digits")
    if not 1 <= subs.msisdn_digits <= 15:
        problems.append("subscribers.msisdn_digits: must be 1..15 (E.164)")
    elif len(str(max(subs.count - 1, 0))) > subs.msisdn_digits - len(subs.msisdn_prefix):
        problems.append(
            f"subscribers: {subs.count} subscribers do not fit MSISDNs of "
            f"{subs.msisdn_digits} digits after the prefix {subs.msisdn_prefix!r}"
        )
    if subs.balance < 0:
        problems.append("subscribers.balance: must be >= 0 (micro-units)")
    if subs.kind not in ("prepaid", "postpaid"):
        problems.append("subscribers.kind: must be prepaid or postpaid")
    run = scenario.run
    if run.rate <= 0:
        problems.append("run.rate: must be above 0")
    if run.duration <= 0:
        problems.append("run.duration: must be above 0")
    if run.connections < 1:
        problems.append("run.connections: must be at least 1")
    if run.workers < 1:
        problems.append("run.workers: must be at least 1")
    if run.timeout <= 0:
        problems.append("run.timeout: must be above 0")
    if run.arrival not in ("uniform", "poisson"):
        problems.append("run.arrival: must be uniform or poisson")
    sessions: tuple[tuple[str, DataService | VoiceService], ...] = (
        ("data", scenario.data),
        ("voice", scenario.voice),
    )
    for name, spec in sessions:
        if spec.updates.high > 10_000:
            problems.append(f"{name}.updates: at most 10000 per session")
    return problems
