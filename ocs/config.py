"""The OCS settings: one frozen object, loaded from four layers.

Precedence, highest first: command-line flags (``overrides``), ``OCS_*``
environment variables, the TOML config file, the defaults declared on
:class:`Settings`. Every setting has one name per layer, derived from the
field name ``<section>_<key>``:

=============  ==========================  =========================
layer          name                        example
=============  ==========================  =========================
TOML file      ``[section] key``           ``[diameter] port = 3868``
environment    ``OCS_SECTION_KEY``         ``OCS_DIAMETER_PORT=3868``
command line   ``--section-key``           ``--diameter-port 3868``
=============  ==========================  =========================

Validation is whole: every value given in every layer is checked (a bad value
in the file is reported even when the environment overrides it), and all
problems are raised together in one :class:`ConfigError`, each message naming
the setting the way the user wrote it (``diameter.port``, ``OCS_DIAMETER_PORT``
or ``--diameter-port``).

Secrets are fields declared with ``secret=True``: they are never shown by
``repr()``, :meth:`Settings.redacted` or error messages, and they cannot be
given as command-line flags (flags are visible to every local user in ``ps``).
The password of a ``redis_url`` or ``billing_database_url`` is masked the same
way and refused on the command line.

Constructing :class:`Settings` directly (tests, embedding) skips validation;
:func:`load_settings` is the checked path.
"""

import argparse
import dataclasses
import difflib
import ipaddress
import math
import os
import re
import sys
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from quota_engine.charging.settings import (
    MAX_CAP_FACTOR,
    MAX_TIMESTAMP_TOLERANCE,
    MAX_USAGE_CAP,
    EngineSettings,
)

ENV_PREFIX = "OCS_"
#: Environment variable naming the config file (read by the CLI, not a setting).
CONFIG_ENV = "OCS_CONFIG"
#: What secrets look like wherever settings are shown.
HIDDEN = "<hidden>"


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class ConfigFileError(ConfigError):
    """The config file cannot be used at all: missing, unreadable or not TOML."""


# --- rules: what a valid value is --------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What a valid value is, in words (``text``) and in code (``accept``).

    ``accept`` receives a value already of the field's type and returns it,
    possibly normalised; it raises ``ValueError`` when the value breaks the rule.
    For tuple fields it is applied to each item. ``text`` completes the sentence
    ``"<name>: <text>, got <value>"``.
    """

    text: str
    accept: Callable[[Any], Any]


def _int_range(low: int, high: int, *, or_none: bool = False) -> Rule:
    """An integer from ``low`` to ``high``; ``or_none``: the setting may also be unset
    (its type, ``int | None``, lets "none" through; this only says so in the message)."""

    def accept(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(value)
        return value

    also = ', or "none"' if or_none else ""
    return Rule(f"must be an integer from {low} to {high}{also}", accept)


def _accept_any(value: Any) -> Any:
    return value


#: A boolean: TOML true/false; from the environment or the command line also the
#: texts of :data:`_BOOL_TEXT` (parsed in :func:`_from_text`).
_BOOLEAN = Rule("must be true or false (as text also 1/0, yes/no)", _accept_any)


def _seconds(minimum: float, *, inclusive: bool, note: str = "") -> Rule:
    def accept(value: float) -> float:
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise ValueError(value)
        return value

    bound = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"
    return Rule(f"must be a number of seconds, {bound}{note}", accept)


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FQDN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def _is_fqdn(value: str) -> bool:
    return len(value) <= 255 and _FQDN.fullmatch(value) is not None


def _accept_fqdn(value: str) -> str:
    if not _is_fqdn(value):
        raise ValueError(value)
    return value


def _accept_host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return _accept_fqdn(value)
    return value


def _accept_network(value: str) -> str:
    # strict: "10.0.0.1/8" has host bits set and is most likely a typo
    return str(ipaddress.ip_network(value, strict=True))


def _accept_nonempty(value: str) -> str:
    if not value.strip():
        raise ValueError(value)
    return value


def _accept_choice(choices: tuple[str, ...], *, upper: bool) -> Callable[[str], str]:
    def accept(value: str) -> str:
        normalised = value.upper() if upper else value.lower()
        if normalised not in choices:
            raise ValueError(value)
        return normalised

    return accept


_COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,2}")
_DIAL_PREFIX = re.compile(r"[0-9]{0,4}")


def _accept_country_code(value: str) -> str:
    if value and not _COUNTRY_CODE.fullmatch(value):
        raise ValueError(value)
    return value


def _accept_dial_prefix(value: str) -> str:
    if not _DIAL_PREFIX.fullmatch(value):
        raise ValueError(value)
    return value


def _accept_token(value: str) -> str:
    if len(value) < 16 or any(ch.isspace() for ch in value):
        raise ValueError("token")
    return value


#: Roles of the management API's bearer tokens: admin reads and writes, viewer reads.
ROLES = ("admin", "viewer")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclasses.dataclass(frozen=True, slots=True)
class ApiToken:
    """One bearer token of the management API: the SHA-256 (hex) of the token and its role.

    Only the digest is configured; the token itself is never stored by the server.
    """

    sha256: str
    role: str

    def __repr__(self) -> str:
        return f"ApiToken(sha256={HIDDEN!r}, role={self.role!r})"


def _accept_api_token(value: Any) -> ApiToken:
    """An :class:`ApiToken` from a TOML table ``{sha256 = "...", role = "..."}``, the
    environment's ``role:sha256`` or an :class:`ApiToken`; ``ValueError`` when invalid."""
    if isinstance(value, ApiToken):
        digest, role = value.sha256, value.role
    elif isinstance(value, Mapping):
        if set(value) != {"sha256", "role"}:
            raise ValueError("token")
        digest, role = value["sha256"], value["role"]
    elif isinstance(value, str):
        role, _, digest = value.strip().partition(":")
    else:
        raise ValueError("token")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest.strip()):
        raise ValueError("token")
    if not isinstance(role, str) or role.strip().lower() not in ROLES:
        raise ValueError("token")
    return ApiToken(sha256=digest.strip().lower(), role=role.strip().lower())


def _accept_http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(value) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(value)
    return value.rstrip("/")


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _accept_redis_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(value) from exc
    if parts.scheme not in _REDIS_SCHEMES:
        raise ValueError(value)
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(value)
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(value)
    return value


_QUERY_PASSWORD = re.compile(r"(?i)((?:^|&)password=)[^&]*")


def redact_url(url: str) -> str:
    """``url`` with the password (if any, also a ``password=`` query parameter, as
    libpq and redis-py accept it) replaced by :data:`HIDDEN`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    query = _QUERY_PASSWORD.sub(rf"\g<1>{HIDDEN}", parts.query)
    if password is None and query == parts.query:
        return url
    netloc = parts.netloc
    if password is not None:
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{user}:{HIDDEN}@{host}"
    return SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment).geturl()


def _url_has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.password is not None or bool(_QUERY_PASSWORD.search(parts.query))
    except ValueError:
        return False


_DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg")
#: Settings whose value is a URL that may hold a password (masked, refused as a flag).
_URL_SETTINGS = frozenset({"redis_url", "billing_database_url"})


_ENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SCHEDULE = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def _accept_entity(value: str) -> str:
    if not _ENTITY.fullmatch(value):
        raise ValueError(value)
    return value


def _accept_number_format(value: str) -> str:
    # the billing package's own check: the format the numbering code will use
    from quota_engine.number_formats import check_format

    return check_format(value)


def _accept_schedule(value: str) -> str:
    if value != "off" and not _SCHEDULE.fullmatch(value):
        raise ValueError(value)
    return value


#: Image files the documents can show as the operator's logo (what both renderers read).
LOGO_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")


def _accept_logo(value: str) -> str:
    path = Path(value)
    if path.suffix.lower() not in LOGO_SUFFIXES or not path.is_file():
        raise ValueError(value)
    return value


def _accept_locale(value: str) -> str:
    # the accounts' own check (language_TERRITORY known to CLDR), so both agree
    from quota_engine.accounts.model import locale_problem

    if locale_problem(value) is not None:
        raise ValueError(value)
    return value


def _accept_one_line(value: str) -> str:
    # the accounts' own check of a name on a document (no control characters)
    from quota_engine.accounts.model import one_line_problem

    if one_line_problem(value) is not None:
        raise ValueError(value)
    return value


def _accept_name(value: str) -> str:
    if not value.strip():
        raise ValueError(value)
    return _accept_one_line(value)


#: How the connection to the SMTP server is secured (ocs.billing.delivery.smtp).
SMTP_SECURITIES = ("starttls", "ssl", "none")


def _accept_email(value: str) -> str:
    # the accounts' own check, so that a sender address passes where a customer's does
    from quota_engine.accounts.model import email_problem

    if email_problem(value) is not None:
        raise ValueError(value)
    return value


def _accept_database_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(value) from exc
    if parts.scheme not in _DATABASE_SCHEMES:
        raise ValueError(value)
    if parts.scheme.startswith("sqlite") and (parts.netloc or parts.path in ("", "/", "/:memory:")):
        raise ValueError(value)  # sqlite:///path; sqlite:// is in memory, lost at exit
    return value


_PORT = _int_range(1, 65535)
_UNSIGNED32 = _int_range(0, 2**32 - 1)
_HOST = Rule("must be an IP address or a host name", _accept_host)
_DIAMETER_IDENTITY = Rule(
    "must be a DiameterIdentity (an FQDN such as ocs.example.net)", _accept_fqdn
)
_TIMEOUT = _seconds(0, inclusive=False)
_INT31 = 2**31 - 1
_CACHE_SIZE = _int_range(1, 100_000_000)
_CACHE_TTL = _seconds(0, inclusive=True, note=" (0: no cache)")
#: The engine's own defaults, so that [charging] and EngineSettings never disagree.
_ENGINE = EngineSettings()


def setting(default: Any, doc: str, rule: Rule, *, secret: bool = False) -> Any:
    """Declare a :class:`Settings` field with its documentation and rule."""
    return dataclasses.field(default=default, metadata={"doc": doc, "rule": rule, "secret": secret})


# --- the settings ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Every setting of one OCS node. Field ``<section>_<key>`` is TOML ``[section] key``."""

    diameter_host: str = setting("0.0.0.0", "Address the Diameter server listens on.", _HOST)
    diameter_port: int = setting(3868, "TCP port of the Diameter server.", _PORT)
    diameter_origin_host: str = setting(
        "ocs.localdomain",
        "Our Origin-Host (DiameterIdentity) in CEA, DWA, CCA.",
        _DIAMETER_IDENTITY,
    )
    diameter_origin_realm: str = setting(
        "localdomain", "Our Origin-Realm (DiameterIdentity).", _DIAMETER_IDENTITY
    )
    diameter_product_name: str = setting(
        "ocs", "Product-Name sent in CEA.", Rule("must be a non-empty string", _accept_nonempty)
    )
    diameter_vendor_id: int = setting(0, "Vendor-Id sent in CEA (0 = none).", _UNSIGNED32)
    diameter_firmware_revision: int = setting(1, "Firmware-Revision sent in CEA.", _UNSIGNED32)
    diameter_watchdog_interval: float = setting(
        30.0,
        "Watchdog interval Tw in seconds (RFC 3539: at least 6).",
        _seconds(6, inclusive=True, note=" (RFC 3539 Tw)"),
    )
    diameter_max_message_size: int = setting(
        65536,
        "Largest Diameter message accepted, in bytes; larger ones are refused.",
        _int_range(4096, 2**24 - 1),
    )
    diameter_allowed_peers: tuple[str, ...] = setting(
        (),
        "Origin-Host names allowed to connect; empty = any.",
        Rule("must be a list of DiameterIdentity names (FQDNs)", _accept_fqdn),
    )
    diameter_allowed_networks: tuple[str, ...] = setting(
        (),
        "Networks (CIDR) peers may connect from; empty = any.",
        Rule("must be a list of IP networks in CIDR notation such as 10.0.0.0/8", _accept_network),
    )
    diameter_cer_timeout: float = setting(
        10.0, "Seconds an accepted connection may wait for its CER.", _TIMEOUT
    )
    diameter_dpa_timeout: float = setting(
        5.0, "Seconds to wait for a DPA after sending a DPR.", _TIMEOUT
    )
    diameter_duplicate_cache_size: int = setting(
        65536, "Answers remembered for duplicate (T-flag) detection.", _int_range(1, 100_000_000)
    )
    diameter_duplicate_ttl: float = setting(
        240.0, "Seconds an answer is remembered for duplicate detection.", _TIMEOUT
    )
    diameter_max_inflight_batches: int = setting(
        256,
        "Batches being answered on one connection before it is no longer read.",
        _int_range(1, 1_000_000),
    )
    http_host: str = setting(
        "0.0.0.0", "Address the HTTP server (health, metrics) listens on.", _HOST
    )
    http_port: int = setting(8080, "TCP port of the HTTP server.", _PORT)
    http_metrics_token: str | None = setting(
        None,
        "When set, GET /metrics requires 'Authorization: Bearer <token>'. Secret.",
        Rule("must be at least 16 characters without whitespace", _accept_token),
        secret=True,
    )
    http_tokens: tuple[ApiToken, ...] = setting(
        (),
        "Bearer tokens of the management API (/v1): SHA-256 hex digest and role. Secret.",
        Rule(
            'must be a list of tokens {sha256 = "<64 hex digits>", role = "admin" or "viewer"} '
            "(environment: role:sha256,role:sha256)",
            _accept_api_token,
        ),
        secret=True,
    )
    http_keepalive_timeout: float = setting(
        15.0, "Seconds an idle keep-alive HTTP connection is kept open.", _TIMEOUT
    )
    http_request_timeout: float = setting(
        10.0,
        "Seconds a client has to send a whole request (line, headers, body) once it started.",
        _TIMEOUT,
    )
    http_max_connections: int = setting(
        256,
        "HTTP connections open at once; beyond, new connections are closed at once.",
        _int_range(1, 1_000_000),
    )
    redis_url: str | None = setting(
        None,
        "Redis URL (redis://, rediss://, unix://); unset = start a private redis-server.",
        Rule("must be a redis://, rediss:// or unix:// URL", _accept_redis_url),
    )
    redis_data_dir: str = setting(
        "./data/redis",
        "Data directory of the private redis-server (AOF, log).",
        Rule("must be a non-empty path", _accept_nonempty),
    )
    redis_tls_ca_file: str | None = setting(
        None,
        "CA certificates (PEM) to verify a rediss:// server with; unset = the system's.",
        Rule("must be a non-empty path", _accept_nonempty),
    )
    redis_tls_cert_file: str | None = setting(
        None,
        "Client certificate (PEM) for a rediss:// server that asks for one.",
        Rule("must be a non-empty path", _accept_nonempty),
    )
    redis_tls_key_file: str | None = setting(
        None,
        "Private key (PEM) of redis.tls_cert_file.",
        Rule("must be a non-empty path", _accept_nonempty),
    )
    redis_partitions: int = setting(
        1024,
        "Partitions the accounts are spread over (their keys' hash tags, one record stream"
        " each); chosen at install time, recorded in ocs:meta, cannot change.",
        _int_range(1, 16384),
    )
    redis_timeout: float = setting(
        1.0,
        "Seconds a Redis command may take; a CCR that cannot be charged in time is"
        " answered 5012 (Credit-Control-Failure-Handling applies).",
        _TIMEOUT,
    )
    redis_reconnect_max_delay: float = setting(
        5.0, "Longest back-off, in seconds, between attempts to reach a lost Redis.", _TIMEOUT
    )
    redis_embedded_max_restarts: int = setting(
        5,
        "Restarts of a dead private redis-server within a minute before ocs serve gives up"
        " and exits (code 3), for its supervisor to act.",
        _int_range(0, 1000),
    )
    charging_validity_time: int = setting(
        _ENGINE.validity_time,
        "Validity-Time of a grant in seconds (cut at the next change of rate).",
        _int_range(1, 2**32 - 1),
    )
    charging_default_octets: int = setting(
        _ENGINE.default_octets,
        "Octets granted when the client lets the server decide (empty RSU).",
        _int_range(1, 2**40),
    )
    charging_default_seconds: int = setting(
        _ENGINE.default_seconds,
        "Seconds granted when the client lets the server decide.",
        _int_range(1, _INT31),
    )
    charging_default_events: int = setting(
        _ENGINE.default_events,
        "Events (service-specific units) granted when the client lets the server decide.",
        _int_range(1, _INT31),
    )
    charging_tariff_time_change: bool = setting(
        _ENGINE.tariff_time_change,
        "Send Tariff-Time-Change with a grant that spans a rate change (Validity-Time is"
        " cut there either way); false for clients that do not support it.",
        _BOOLEAN,
    )
    charging_grace: int = setting(
        _ENGINE.grace,
        "Seconds after a grant's validity before the sweeper settles a silent session.",
        _int_range(1, _INT31),
    )
    charging_timestamp_tolerance: int = setting(
        _ENGINE.timestamp_tolerance,
        "A request is rated at its Event-Timestamp when within this many seconds of"
        " server time (either way), else at server time.",
        _int_range(0, MAX_TIMESTAMP_TOLERANCE),
    )
    charging_quota_threshold_percent: int | None = setting(
        _ENGINE.quota_threshold_percent,
        "Volume/Time-Quota-Threshold as a percentage of the grant; none = not sent.",
        _int_range(0, 100, or_none=True),
    )
    charging_quota_holding_time: int | None = setting(
        _ENGINE.quota_holding_time,
        "Quota-Holding-Time in seconds; unset = not sent.",
        _int_range(0, 2**32 - 1, or_none=True),
    )
    charging_idempotency_ttl: int = setting(
        _ENGINE.idempotency_ttl,
        "Seconds an answer is kept in Redis for retransmitted CCRs.",
        _int_range(1, _INT31),
    )
    charging_identity_cache_ttl: float = setting(
        _ENGINE.identity_cache_ttl,
        "Seconds an identity -> account mapping is reused without reading Redis.",
        _CACHE_TTL,
    )
    charging_identity_cache_size: int = setting(
        _ENGINE.identity_cache_size, "Identities kept in that cache.", _CACHE_SIZE
    )
    charging_account_cache_ttl: float = setting(
        _ENGINE.account_cache_ttl,
        "Seconds an account's plan, cycle day, currency and usage are reused (checked by the scripts).",
        _CACHE_TTL,
    )
    charging_account_cache_size: int = setting(
        _ENGINE.account_cache_size, "Accounts kept in that cache.", _CACHE_SIZE
    )
    charging_usage_ttl: int = setting(
        _ENGINE.usage_ttl,
        "Seconds a bill period's usage (for tiers) is kept after its last write.",
        _int_range(1, _INT31),
    )
    charging_usage_cap_factor: int = setting(
        _ENGINE.usage_cap_factor,
        "A report is committed up to this many times its grant, or the default grant "
        "if more (the rest is not charged).",
        _int_range(1, MAX_CAP_FACTOR),
    )
    charging_usage_cap_octets: int = setting(
        _ENGINE.usage_cap_octets,
        "Most octets one report commits, grant or not.",
        _int_range(1, MAX_USAGE_CAP),
    )
    charging_usage_cap_seconds: int = setting(
        _ENGINE.usage_cap_seconds,
        "Most seconds one report commits, grant or not.",
        _int_range(1, MAX_USAGE_CAP),
    )
    charging_usage_cap_events: int = setting(
        _ENGINE.usage_cap_events,
        "Most events one report commits, grant or not.",
        _int_range(1, MAX_USAGE_CAP),
    )
    charging_max_batch: int = setting(
        256,
        "Most requests charged together in one engine call (one Redis round trip).",
        _int_range(1, 100_000),
    )
    charging_sweep_interval: float = setting(
        1.0, "Seconds between two rounds of the expired-session sweeper.", _TIMEOUT
    )
    charging_sweep_limit: int = setting(
        100, "Expired sessions settled per sweeper pipeline.", _int_range(1, 100_000)
    )
    charging_failure_handling: str = setting(
        "retry_and_terminate",
        "Credit-Control-Failure-Handling sent in answers while charging is unavailable"
        " (5012): terminate, continue, retry_and_terminate, or none (not sent).",
        Rule(
            "must be one of terminate, continue, retry_and_terminate, none",
            _accept_choice(("terminate", "continue", "retry_and_terminate", "none"), upper=False),
        ),
    )
    records_directory: str = setting(
        "./data/records",
        "Directory of the rated-record segment files (written by the exporter, read by"
        " ocs records read).",
        Rule("must be a non-empty path", _accept_nonempty),
    )
    records_segment_max_bytes: int = setting(
        64 * 1024 * 1024,
        "A segment is sealed (fsync'd, renamed) once it holds this many bytes.",
        _int_range(4096, 2**40),
    )
    records_segment_max_age: float = setting(
        60.0,
        "Seconds after its first record a segment is sealed, however small.",
        _seconds(0, inclusive=False),
    )
    records_export: str = setting(
        "auto",
        "Run the record exporter inside ocs serve: on, off, or auto (on with the embedded"
        " Redis, off with redis.url, where ocs export runs as a service of its own).",
        Rule("must be one of auto, on, off", _accept_choice(("auto", "on", "off"), upper=False)),
    )
    records_export_batch: int = setting(
        5000, "Most records read from one partition's stream at a time.", _int_range(1, 1_000_000)
    )
    records_export_poll_interval: float = setting(
        1.0,
        "Seconds between two reads of a partition's stream that had nothing more to give"
        " (up to 8 times this while its reads come back empty).",
        _TIMEOUT,
    )
    records_export_lease: float = setting(
        15.0,
        "Seconds an exporter's lease on a partition lasts unless renewed: how soon the"
        " others take over the partitions of an exporter that died.",
        _seconds(0.1, inclusive=True),
    )
    records_stream_cap: int = setting(
        100_000,
        "Records of a partition's stream above which the export is reported lagging"
        " (metric, alert, log); charging goes on and no record is dropped.",
        _int_range(1, 2**40),
    )
    records_export_metrics_port: int = setting(
        9108, "TCP port of ocs export's /metrics and /health (on http.host).", _PORT
    )
    billing_database_url: str = setting(
        "sqlite:///./data/billing.db",
        "Database of invoices, numbering and credit notes: sqlite:///path (embedded)"
        " or postgresql://user@host/db (production).",
        Rule(
            "must be a sqlite:///path or postgresql://user@host/database URL",
            _accept_database_url,
        ),
    )
    billing_entity: str = setting(
        "default",
        "Billing entity (seller) that issues and numbers the invoices.",
        Rule("must be 1 to 64 letters, digits, '.', '_' or '-'", _accept_entity),
    )
    billing_invoice_number_format: str = setting(
        "INV-{seq:06d}",
        "How invoice numbers are written: {seq} (e.g. {seq:06d}) and optionally {entity}.",
        Rule("must be a number format with {seq}", _accept_number_format),
    )
    billing_credit_note_number_format: str = setting(
        "CN-{seq:06d}",
        "How credit note numbers are written (their own gap-free series).",
        Rule("must be a number format with {seq}", _accept_number_format),
    )
    billing_grace_period: float = setting(
        259_200.0,
        "Seconds after a bill period's end during which its invoices stay drafts and"
        " late records still go into them; then the bill run finalises them.",
        _seconds(0, inclusive=True),
    )
    billing_late_window: float = setting(
        5_356_800.0,
        "Seconds before a period's start in which a bill run looks for records no"
        " invoice holds yet (late usage, billed on the next invoice and flagged).",
        _seconds(0, inclusive=True),
    )
    billing_schedule: str = setting(
        "off",
        "Daily bill run inside ocs serve at this local time of the catalog (HH:MM), or off.",
        Rule('must be a time HH:MM or "off"', _accept_schedule),
    )
    billing_dunning_reminder_days: int = setting(
        7,
        "Days a final invoice is overdue (unpaid after its due date, documents.payment_terms"
        " days after issue) before its account gets a payment reminder (dunning).",
        _int_range(0, 3650),
    )
    billing_dunning_barring_days: int = setting(
        30,
        "Days overdue before dunning bars the account (open sessions get an ASR); a"
        " payment that settles what is overdue lifts the bar.",
        _int_range(0, 3650),
    )
    documents_operator_name: str = setting(
        "OCS Telecom",
        "The operator's legal name in the header of the invoice documents.",
        Rule("must be one line of 1 to 200 characters", _accept_name),
    )
    documents_operator_address: str = setting(
        "",
        "The operator's postal address on the documents, lines separated by newlines.",
        Rule("must be text", _accept_any),
    )
    documents_vat_id: str = setting(
        "",
        "The operator's VAT or company registration id on the documents; empty = none.",
        Rule("must be one line of at most 200 characters", _accept_one_line),
    )
    documents_support: str = setting(
        "",
        "Support contact printed on the documents (phone, e-mail, web); empty = none.",
        Rule("must be one line of at most 200 characters", _accept_one_line),
    )
    documents_logo: str | None = setting(
        None,
        "Logo file (PNG, JPEG or SVG) in the documents' header; unset = the shipped logo.",
        Rule("must be an existing .png, .jpg, .jpeg or .svg file", _accept_logo),
    )
    documents_payment_terms: int = setting(
        14,
        "Days from an invoice's issue date to its due date.",
        _int_range(0, 365),
    )
    documents_locale: str = setting(
        "en_GB",
        "Locale of the documents of an account without one (language_TERRITORY, CLDR).",
        Rule("must be a locale such as de_DE or en_GB known to CLDR", _accept_locale),
    )
    smtp_host: str | None = setting(
        None,
        "SMTP server the invoices are e-mailed through; unset = no e-mail (deliveries wait).",
        _HOST,
    )
    smtp_port: int = setting(587, "TCP port of the SMTP server (587 submission, 465 SSL).", _PORT)
    smtp_security: str = setting(
        "starttls",
        "starttls (upgrade the connection, required), ssl (TLS from the start) or none.",
        Rule("must be starttls, ssl or none", _accept_choice(SMTP_SECURITIES, upper=False)),
    )
    smtp_user: str | None = setting(
        None,
        "User to log in to the SMTP server as; unset = no login.",
        Rule("must be a non-empty string", _accept_nonempty),
    )
    smtp_password: str | None = setting(
        None,
        "Password of smtp.user. Secret: OCS_SMTP_PASSWORD or the file, never a flag.",
        Rule("must be a non-empty string", _accept_nonempty),
        secret=True,
    )
    smtp_secret_file: str | None = setting(
        None,
        "File holding the password of smtp.user (read at each connection).",
        Rule("must be a non-empty path", _accept_nonempty),
    )
    smtp_from: str = setting(
        "billing@ocs.localdomain",
        "Sender address of the invoice e-mails (From, envelope sender).",
        Rule("must be an e-mail address such as billing@example.net", _accept_email),
    )
    smtp_timeout: float = setting(30.0, "Seconds an SMTP connection or reply may take.", _TIMEOUT)
    delivery_print_directory: str | None = setting(
        None,
        "Directory the print batches of paper invoices are written to; unset = they wait.",
        Rule("must be a non-empty path", _accept_nonempty),
    )
    delivery_max_attempts: int = setting(
        8,
        "Attempts of an e-mail delivery before it is failed (temporary errors).",
        _int_range(1, 100),
    )
    delivery_retry_delay: float = setting(
        300.0,
        "Seconds before the second attempt; doubled for each one after, at most a day.",
        _seconds(1, inclusive=True),
    )
    numbering_country_code: str = setting(
        "",
        "Home country code (E.164, e.g. 49) for national-format numbers; empty = none.",
        Rule('must be a country code of 1 to 3 digits (such as "49"), or ""', _accept_country_code),
    )
    numbering_national_prefix: str = setting(
        "0",
        "Prefix dialled before a national number (trunk prefix); empty = none.",
        Rule("must be up to 4 digits", _accept_dial_prefix),
    )
    numbering_international_prefix: str = setting(
        "00",
        "Prefix dialled before an international number; empty = none.",
        Rule("must be up to 4 digits", _accept_dial_prefix),
    )
    api_url: str | None = setting(
        None,
        "Management API the ocs client commands talk to; unset = http://127.0.0.1:<http.port>.",
        Rule("must be an http:// or https:// URL", _accept_http_url),
    )
    api_token: str | None = setting(
        None,
        "Bearer token the ocs client commands send to the management API. Secret.",
        Rule("must be at least 16 characters without whitespace", _accept_token),
        secret=True,
    )
    log_level: str = setting(
        "INFO",
        "One of DEBUG, INFO, WARNING, ERROR.",
        Rule(
            "must be one of DEBUG, INFO, WARNING, ERROR",
            _accept_choice(("DEBUG", "INFO", "WARNING", "ERROR"), upper=True),
        ),
    )
    log_format: str = setting(
        "json",
        "'json' (one JSON object per line) or 'text'.",
        Rule("must be 'json' or 'text'", _accept_choice(("json", "text"), upper=False)),
    )
    metrics_sample_interval: float = setting(
        15.0,
        "Seconds between two samples of open sessions and outstanding reservations from Redis.",
        _seconds(1, inclusive=True),
    )

    def redacted(self) -> dict[str, Any]:
        """Every field by name, secrets replaced by :data:`HIDDEN` (when set)."""
        return {spec.name: spec.show(getattr(self, spec.name)) for spec in SPECS}

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.redacted().items())
        return f"Settings({shown})"


# --- one description per field, derived from the dataclass ----------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SettingSpec:
    """How one :class:`Settings` field is named, typed and checked in each layer."""

    name: str  # field name: diameter_port
    section: str  # diameter
    key: str  # port
    kind: str  # bool | int | optional_int | float | str | optional_str | str_tuple | tokens
    default: Any
    doc: str
    rule: Rule
    secret: bool

    @property
    def toml_name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str | None:
        """The command-line flag, or None for secrets (flags show in ``ps``)."""
        return None if self.secret else "--" + self.name.replace("_", "-")

    def show(self, value: Any) -> Any:
        """``value`` as it may be displayed: secrets hidden, URL passwords masked."""
        if value is None or value == ():
            return value
        if self.secret:
            return HIDDEN
        if self.name in _URL_SETTINGS:
            return redact_url(value)
        return value


_KINDS: dict[Any, str] = {
    bool: "bool",
    int: "int",
    int | None: "optional_int",
    float: "float",
    str: "str",
    str | None: "optional_str",
    tuple[str, ...]: "str_tuple",
    tuple[ApiToken, ...]: "tokens",
}


def _specs() -> tuple[SettingSpec, ...]:
    hints = typing.get_type_hints(Settings)
    specs = []
    for f in dataclasses.fields(Settings):
        section, _, key = f.name.partition("_")
        kind = _KINDS.get(hints[f.name])
        if kind is None or not key:
            raise TypeError(f"Settings.{f.name}: unsupported type or name")
        specs.append(
            SettingSpec(
                name=f.name,
                section=section,
                key=key,
                kind=kind,
                default=f.default,
                doc=f.metadata["doc"],
                rule=f.metadata["rule"],
                secret=f.metadata["secret"],
            )
        )
    return tuple(specs)


#: One immutable description per field, in declaration order.
SPECS: tuple[SettingSpec, ...] = _specs()
_BY_NAME = {spec.name: spec for spec in SPECS}
_BY_TOML = {(spec.section, spec.key): spec for spec in SPECS}
_BY_ENV = {spec.env: spec for spec in SPECS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(spec.section for spec in SPECS))


# --- parsing one value -----------------------------------------------------------


class _Invalid(Exception):
    """A value breaks its rule; ``shown`` is the offending value, safe to display."""

    def __init__(self, shown: Any) -> None:
        super().__init__(shown)
        self.shown = shown


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
#: How an optional integer is unset in every layer (TOML has no null).
_NONE_TEXT = ("", "none")
#: A boolean as environment or command-line text (case-insensitive).
_BOOL_TEXT = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _from_text(spec: SettingSpec, text: str) -> Any:
    """Parse an environment or command-line string to the field's type."""
    if spec.kind == "bool":
        parsed = _BOOL_TEXT.get(text.strip().lower())
        if parsed is None:
            raise _Invalid(text)
        return parsed
    if spec.kind in ("int", "optional_int"):
        if spec.kind == "optional_int" and text.strip().lower() in _NONE_TEXT:
            return None
        if not _INT_TEXT.fullmatch(text.strip()):
            raise _Invalid(text)
        return int(text)
    if spec.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise _Invalid(text) from None
    if spec.kind == "optional_str":
        return text or None
    if spec.kind in ("str_tuple", "tokens"):
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


def _check_type(spec: SettingSpec, value: Any) -> Any:
    """Check a value that arrived typed (TOML, programmatic overrides)."""
    ok: bool
    if spec.kind == "bool":
        ok = isinstance(value, bool)
    elif spec.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec.kind == "optional_int":
        if isinstance(value, str) and value.strip().lower() in _NONE_TEXT:
            return None
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    elif spec.kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif spec.kind == "optional_str":
        ok = value is None or isinstance(value, str)
        value = value or None
    elif spec.kind == "str_tuple":
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        value = tuple(v.strip() for v in value) if ok else value
    elif spec.kind == "tokens":
        ok = isinstance(value, list | tuple) and all(
            isinstance(v, Mapping | ApiToken) for v in value
        )
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise _Invalid(value)
    return value


def _validate(spec: SettingSpec, value: Any, *, text: bool) -> Any:
    """Return the checked, normalised value or raise :class:`_Invalid`."""
    value = _from_text(spec, value) if text else _check_type(spec, value)
    if value is None:
        return None
    if spec.kind in ("str_tuple", "tokens"):
        items = []
        for item in value:
            try:
                items.append(spec.rule.accept(item))
            except ValueError:
                raise _Invalid(item) from None
        return tuple(items)
    try:
        return spec.rule.accept(value)
    except ValueError:
        raise _Invalid(value) from None


def _problem(spec: SettingSpec, name: str, shown: Any) -> str:
    got = HIDDEN if spec.secret else repr(spec.show(shown) if isinstance(shown, str) else shown)
    return f"{name}: {spec.rule.text}, got {got}"


def _suggest(word: str, candidates: typing.Iterable[str], template: str) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.7)
    return template.format(match[0]) if match else ""


# --- the layers ------------------------------------------------------------------

# One layer maps field name -> (value, name the user wrote).
_Layer = dict[str, tuple[Any, str]]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file; raise :class:`ConfigFileError` if it cannot be used."""
    try:
        with open(path, "rb") as fp:
            return tomllib.load(fp)
    except FileNotFoundError:
        raise ConfigFileError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise ConfigFileError([f"{path}: is a directory, not a config file"]) from None
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigFileError([f"{path}: not valid TOML: not UTF-8 ({exc.reason})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError([f"{path}: not valid TOML: {exc}"]) from None


def _toml_layer(document: Mapping[str, Any], errors: list[str]) -> _Layer:
    layer: _Layer = {}
    for section, table in document.items():
        if section not in SECTIONS:
            if isinstance(table, dict):
                hint = _suggest(section, SECTIONS, ", did you mean [{}]?")
                errors.append(f"unknown section [{section}]{hint}")
            else:
                errors.append(
                    f"{section}: unknown top-level key; settings belong in sections "
                    f"({', '.join(f'[{s}]' for s in SECTIONS)})"
                )
            continue
        if not isinstance(table, dict):
            errors.append(f"{section}: must be a table [{section}], got {table!r}")
            continue
        for key, value in table.items():
            name = f"{section}.{key}"
            spec = _BY_TOML.get((section, key))
            if spec is None:
                keys = [s.key for s in SPECS if s.section == section]
                hint = _suggest(key, keys, f", did you mean {section}.{{}}?")
                errors.append(f"{name}: unknown key{hint}")
                continue
            try:
                layer[spec.name] = (_validate(spec, value, text=False), name)
            except _Invalid as bad:
                errors.append(_problem(spec, name, bad.shown))
    return layer


SERVICE_LINK_ENV = re.compile(
    r"OCS_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)"
)
"""The variables Kubernetes (and Docker's links) give every container for a Service
named ``ocs``: ``OCS_SERVICE_HOST``, ``OCS_SERVICE_PORT[_<NAME>]``, ``OCS_PORT`` and
``OCS_PORT_<N>_<PROTO>[_PROTO|_PORT|_ADDR]``. They name no setting (a test keeps it
so) and are not ours: ignored (:func:`foreign_env` names them for a warning), where any
other unknown ``OCS_*`` is an error."""


def foreign_env(env: Mapping[str, str]) -> list[str]:
    """The variables of ``env`` that look like settings but are Kubernetes' or Docker's
    (:data:`SERVICE_LINK_ENV`), sorted: the settings ignore them."""
    return sorted(var for var in env if var not in _BY_ENV and SERVICE_LINK_ENV.fullmatch(var))


def _env_layer(env: Mapping[str, str], errors: list[str]) -> _Layer:
    layer: _Layer = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        if var not in _BY_ENV and SERVICE_LINK_ENV.fullmatch(var):
            continue
        spec = _BY_ENV.get(var)
        if spec is None:
            names = [v.removeprefix(ENV_PREFIX) for v in (*_BY_ENV, CONFIG_ENV)]
            hint = _suggest(
                var.removeprefix(ENV_PREFIX), names, f", did you mean {ENV_PREFIX}{{}}?"
            )
            errors.append(f"{var}: unknown setting{hint}")
            continue
        try:
            layer[spec.name] = (_validate(spec, env[var], text=True), var)
        except _Invalid as bad:
            errors.append(_problem(spec, var, bad.shown))
    return layer


def _override_layer(overrides: Mapping[str, object], errors: list[str]) -> _Layer:
    """Command-line values by field name; None means "not given", strings are parsed."""
    layer: _Layer = {}
    for field_name, value in overrides.items():
        if value is None:
            continue
        spec = _BY_NAME.get(field_name)
        if spec is None:
            errors.append(f"{field_name}: unknown setting")
            continue
        if spec.flag is None:
            errors.append(
                f"{spec.name}: is a secret and cannot be given on the command line; "
                f"set {spec.env} or {spec.toml_name} in the config file"
            )
            continue
        if isinstance(value, str) and spec.name in _URL_SETTINGS and _url_has_password(value):
            errors.append(
                f"{spec.flag}: do not put a password on the command line (visible in ps); "
                f"set {spec.env} or {spec.toml_name} in the config file"
            )
            continue
        try:
            layer[spec.name] = (_validate(spec, value, text=isinstance(value, str)), spec.flag)
        except _Invalid as bad:
            errors.append(_problem(spec, spec.flag, bad.shown))
    return layer


def _cross_check(values: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    """Rules that involve more than one setting."""
    problems = []
    if values["diameter_port"] == values["http_port"]:
        diameter = names.get("diameter_port", "diameter.port")
        http = names.get("http_port", "http.port")
        problems.append(f"{http}: must differ from {diameter} (both {values['http_port']})")
    url = values["redis_url"] or ""
    for name in ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file"):
        if values[name] is not None and not url.startswith("rediss://"):
            shown = names.get(name, _BY_NAME[name].toml_name)
            problems.append(f"{shown}: needs a rediss:// redis.url (TLS)")
    national, international = (
        values["numbering_national_prefix"],
        values["numbering_international_prefix"],
    )
    if national and national == international:
        shown = names.get("numbering_national_prefix", "numbering.national_prefix")
        problems.append(
            f"{shown}: must differ from numbering.international_prefix (both {national!r})"
        )
    if values["smtp_password"] is not None and values["smtp_secret_file"] is not None:
        shown = names.get("smtp_secret_file", "smtp.secret_file")
        problems.append(f"{shown}: give smtp.password or smtp.secret_file, not both")
    secret = values["smtp_password"] is not None or values["smtp_secret_file"] is not None
    if secret and values["smtp_user"] is None:
        problems.append("smtp.user: must be set when a password is given")
    cert, key = values["redis_tls_cert_file"], values["redis_tls_key_file"]
    if (cert is None) != (key is None):
        missing = "redis_tls_key_file" if key is None else "redis_tls_cert_file"
        given = "redis_tls_cert_file" if key is None else "redis_tls_key_file"
        problems.append(
            f"{names.get(given, _BY_NAME[given].toml_name)}: needs "
            f"{_BY_NAME[missing].toml_name} too"
        )
    return problems


def _merge(layers: list[_Layer], errors: list[str]) -> Settings:
    values: dict[str, Any] = {spec.name: spec.default for spec in SPECS}
    names: dict[str, str] = {}
    for layer in layers:  # lowest precedence first
        for field_name, (value, name) in layer.items():
            values[field_name] = value
            names[field_name] = name
    if not errors:
        errors.extend(_cross_check(values, names))
    if errors:
        raise ConfigError(errors)
    return Settings(**values)


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Build the settings: ``overrides`` > ``env`` > ``config_file`` > defaults.

    ``env`` defaults to ``os.environ``; only ``OCS_*`` variables are read, and
    one that names no setting is an error (``OCS_CONFIG`` excepted). ``overrides``
    maps field names to values as the command line gives them: ``None`` means
    "not given", strings are parsed like environment values. Raises
    :class:`ConfigError` listing every problem of every layer.
    """
    errors: list[str] = []
    layers: list[_Layer] = []
    if config_file is not None:
        try:
            document = read_config_file(config_file)
        except ConfigFileError as exc:
            errors.extend(exc.errors)
        else:
            layers.append(_toml_layer(document, errors))
    layers.append(_env_layer(os.environ if env is None else env, errors))
    layers.append(_override_layer(overrides or {}, errors))
    return _merge(layers, errors)


def command_settings(
    command: str,
    config_file: str | None,
    env: Mapping[str, str],
    overrides: Mapping[str, object],
) -> Settings | None:
    """The settings of the command line ``command`` (``ocs invoice show``): its
    ``--config`` file (else ``OCS_CONFIG``), the environment and the ``overrides`` of
    its flags (:func:`load_settings`); None after saying on stderr what is invalid
    (the command exits 2)."""
    try:
        return load_settings(config_file or env.get(CONFIG_ENV) or None, env, overrides)
    except ConfigError as exc:
        print(f"{command}: invalid configuration:\n  " + "\n  ".join(exc.errors), file=sys.stderr)
        return None


def add_setting_flags(
    parser: argparse.ArgumentParser, names: typing.Iterable[str], *, config: bool = True
) -> None:
    """Add ``--config`` (unless ``config`` is False) and the flag of each named setting
    to a command's parser; each flag's help names its TOML key and environment
    variable. The value lands in the namespace under the setting's name, for
    :func:`load_settings`'s ``overrides``."""
    if config:
        parser.add_argument(
            "--config", metavar="FILE", help=f"TOML config file (default: ${CONFIG_ENV})"
        )
    for name in names:
        spec = next(s for s in SPECS if s.name == name)
        if spec.flag is None:
            raise ValueError(f"setting {name} has no flag (a secret)")
        parser.add_argument(
            spec.flag,
            dest=spec.name,
            metavar=spec.key.upper(),
            help=f"{spec.doc} [{spec.toml_name}, {spec.env}; default: {spec.default}]",
        )


def check_config(path: str | Path) -> list[str]:
    """Problems of one config file on its own ([] when valid).

    Raises :class:`ConfigFileError` when the file is missing, unreadable or not
    TOML, so that callers can tell "cannot read" from "read, but wrong".
    """
    errors: list[str] = []
    layer = _toml_layer(read_config_file(path), errors)
    try:
        _merge([layer], errors)
    except ConfigError as exc:
        return exc.errors
    return []
