"""Reading catalog and provisioning documents from TOML, JSON or YAML files.

One reader for both, so a file that loads as a catalog also loads inside a
provisioning document, with the same error texts.
"""

from __future__ import annotations

import json
import tomllib
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
