"""Catalog and provisioning documents: reading them from TOML, JSON or YAML files, and
the checker their parsers share.

One reader and one checker for both, so a file that loads as a catalog also loads
inside a provisioning document, and both report a problem with the same text.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Set
from pathlib import Path
from typing import Any


class DocumentError(ValueError):
    """The file cannot be read or parsed; the message names the file."""


def read_document(path: str | Path) -> dict[str, Any]:
    """Parse a ``.toml``, ``.json`` or ``.yaml``/``.yml`` file into a mapping.

    YAML needs PyYAML; without it the error says so.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        elif suffix == ".json":
            with path.open("rb") as fh:
                data = json.load(fh)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise DocumentError(
                    f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use TOML or JSON"
                ) from None
            with path.open("rb") as fh:
                data = yaml.safe_load(fh)
        else:
            raise DocumentError(
                f"{path}: unknown format {suffix!r} (use .toml, .json, .yaml or .yml)"
            )
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except DocumentError:
        raise
    except Exception as exc:  # TOML, JSON, YAML and Unicode decoding errors
        raise DocumentError(f"{path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise DocumentError(f"{path}: the document must be a table (mapping)")
    return data


MISSING: Any = object()
"""What ``mapping.get(key, MISSING)`` gives for a key the document leaves out (``None``
is a value the document gives, e.g. JSON ``null``)."""


def quoted(text: str) -> str:
    """``text`` as the problem texts show a value of the document: in JSON quotes."""
    return json.dumps(text, ensure_ascii=False)


class DocumentChecker:
    """Checks a document value by value and collects every problem as ``path: message``
    (``plans[2].tariffs[0].rate: must be ...``) instead of stopping at the first.

    The catalog parser and the provisioning parser subclass it, so the two kinds of
    document (and a catalog inside a provisioning document) report the same problem
    with the same text. Each check returns the value when it is good and, when it is
    not, records a problem and returns ``None`` (or the given default).
    """

    ROOT = ""
    """The path of the document itself; its own keys are named without a prefix."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def report(self, path: str, problems: Iterable[tuple[str, str]]) -> bool:
        """Record ``(field, message)`` problems of the value at ``path``; True if none."""
        found = False
        for name, message in problems:
            self.problem(f"{path}.{name}", message)
            found = True
        return not found

    def table(self, value: Any, path: str, keys: Set[str]) -> Mapping[str, Any] | None:
        """``value`` if it is a mapping; every key not in ``keys`` is an unknown key."""
        if not isinstance(value, Mapping):
            self.problem(path, "must be a table")
            return None
        for key in value:
            if key not in keys:
                self.problem(f"{path}.{key}" if path != self.ROOT else str(key), "unknown key")
        return value

    def required(self, item: Mapping[str, Any], path: str, *names: str) -> bool:
        """Whether ``item`` gives every key of ``names`` (a null counts as not given)."""
        missing = [name for name in names if item.get(name) is None]
        for name in missing:
            self.problem(f"{path}.{name}", "is required")
        return not missing

    def list_(self, value: Any, path: str, *, non_empty: bool = False) -> list[Any] | None:
        if not isinstance(value, list | tuple):
            self.problem(path, "must be a list")
            return None
        if non_empty and not value:
            self.problem(path, "must not be empty")
            return None
        return list(value)

    def items(self, value: Any, path: str) -> list[tuple[str, Any]]:
        """``(path, item)`` for each item of an optional list (missing or null: none)."""
        if value is MISSING or value is None:
            return []
        values = self.list_(value, path)
        return [] if values is None else [(f"{path}[{i}]", v) for i, v in enumerate(values)]

    def required_items(self, value: Any, path: str) -> list[tuple[str, Any]]:
        """``(path, item)`` for each item of a list that must be given and not be empty."""
        if value is MISSING:
            self.problem(path, "is required")
            return []
        values = self.list_(value, path, non_empty=True) or []
        return [(f"{path}[{i}]", v) for i, v in enumerate(values)]

    def tables(
        self, value: Any, path: str, keys: Set[str]
    ) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """``(path, table)`` for each item of an optional list of tables that is a table
        (checked by :meth:`table`; the others are reported and skipped). Lazy, so the
        problems of each item come before those of the next."""
        for item_path, raw in self.items(value, path):
            item = self.table(raw, item_path, keys)
            if item is not None:
                yield item_path, item

    def string(self, value: Any, path: str) -> str | None:
        if value is MISSING:
            self.problem(path, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(path, "must be a non-empty string")
            return None
        return value

    def optional_string(self, value: Any, path: str) -> str | None:
        return None if value is MISSING or value is None else self.string(value, path)

    def integer(self, value: Any, path: str, low: int, high: int, what: str) -> int | None:
        """An int (not a bool) from ``low`` to ``high``; else "must be {what}"."""
        if value is MISSING:
            self.problem(path, "is required")
            return None
        if type(value) is not int or not low <= value <= high:
            self.problem(path, f"must be {what}")
            return None
        return value

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is MISSING or value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, "must be true or false")
            return default
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...], default: str | None) -> Any:
        """One of ``choices``; missing or null gives ``default`` (required when None)."""
        if value is MISSING or value is None:
            if default is None:
                self.problem(path, "is required")
            return default
        if value not in choices:
            self.problem(path, "must be one of " + ", ".join(quoted(c) for c in choices))
            return default
        return value
