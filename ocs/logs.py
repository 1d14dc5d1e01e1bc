"""Structured logs: one event per line, a snake_case name plus key/value fields.

Code logs through :func:`log_event` (``log_event(log, "peer_opened",
origin_host=..., address=...)``) so that every line can be filtered by event
name and fields, in JSON (one object per line, for log shippers) or in text
(``key=value``, for people). ``protocol`` and ``quota_engine``, which may not import
this module, log ``logger.warning("sweeper_round_failed error=%s", error)``: a snake_case
name, then ``key=%s`` (``%d``, ``%r``) per field, which come out as that event and its
fields too. Records logged by libraries with other text (``logger.info("...")``) still
come out, with ``event`` null and a ``message``.

Subscriber identities (MSISDN, IMSI) must not appear in clear at INFO level or
above: pass them through :func:`mask_identity`. Clear values are allowed at
DEBUG only.
"""

import functools
import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("json", "text")

_EVENT_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
# keys every line has; fields may not reuse them
RESERVED_FIELDS = frozenset({"ts", "level", "logger", "event", "message", "exc"})
# LogRecord attribute holding (event name, fields); prefixed to avoid clashes
_EXTRA = "ocs_event"


def _timestamp(record: logging.LogRecord) -> str:
    seconds = int(record.created)
    millis = int((record.created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


_FIELD_FORMAT = re.compile(r"([a-z][a-z0-9_]*)=%([sdir])")


@functools.lru_cache(maxsize=256)
def _format_fields(message: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """``("sweeper_round_failed", (("error", "s"),))`` for the format string
    ``"sweeper_round_failed error=%s"``: the event convention of the packages that may
    not import this module (``protocol``, ``quota_engine``); None for any other text."""
    name, *rest = message.split(" ")
    if not _EVENT_NAME.fullmatch(name):
        return None
    fields = []
    for token in rest:
        match = _FIELD_FORMAT.fullmatch(token)
        if match is None:
            return None
        fields.append((match[1], match[2]))
    return name, tuple(fields)


def _event_of(record: logging.LogRecord) -> tuple[str | None, Mapping[str, Any]]:
    event: tuple[str | None, Mapping[str, Any]] | None = getattr(record, _EXTRA, None)
    if event is not None:
        return event
    # logger.warning("sweeper_round_failed error=%s", error): the event and its fields
    parsed = _format_fields(record.msg) if isinstance(record.msg, str) else None
    args = record.args if isinstance(record.args, tuple) else ()
    if parsed is None or len(parsed[1]) != len(args):
        return None, {}
    name, formats = parsed
    fields = {
        key: repr(value) if conversion == "r" else value
        for (key, conversion), value in zip(formats, args, strict=True)
        if key not in RESERVED_FIELDS
    }
    return name, fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, fields[, message][, exc]."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = _event_of(record)
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "event": event,
        }
        if event is None:
            line["message"] = record.getMessage()
        line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(ch.isspace() or ch in '"=' for ch in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger event key=value ...``; values with spaces are quoted."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = _event_of(record)
        parts = [_timestamp(record), record.levelname, record.name]
        parts.append(event if event is not None else _text_value(record.getMessage()))
        parts.extend(f"{key}={_text_value(value)}" for key, value in fields.items())
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """Send all logs to ``stream`` (default stderr) at ``level`` in format ``fmt``.

    Replaces the handler a previous call installed (calling twice does not
    duplicate lines) and leaves other handlers alone. Returns the handler so
    that a caller (or a test) can remove it.
    """
    if level.upper() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "ocs_handler", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.ocs_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def log_event(
    logger: logging.Logger,
    name: str,
    /,
    *,
    level: int = logging.INFO,
    exc_info: Any = None,
    **fields: Any,
) -> None:
    """Log event ``name`` (snake_case) with ``fields`` at ``level``.

    Raises ``ValueError`` for a name that is not snake_case or a field that
    reuses a key every line has (:data:`RESERVED_FIELDS`): both are mistakes in
    the calling code, meant to be caught by its tests.
    """
    if not _EVENT_NAME.fullmatch(name):
        raise ValueError(f"event name must be snake_case, got {name!r}")
    clash = RESERVED_FIELDS.intersection(fields)
    if clash:
        raise ValueError(f"field names {sorted(clash)} are reserved for every log line")
    if logger.isEnabledFor(level):
        logger.log(level, name, exc_info=exc_info, extra={_EXTRA: (name, fields)})


def mask_identity(value: str) -> str:
    """Hide all but the last 4 characters: ``"491701234567"`` -> ``"********4567"``.

    Values of 4 characters or fewer are hidden entirely, since showing "the
    last 4" would show all of them.
    """
    if len(value) <= 4:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]
