"""Redis replies as text: one function per decoding policy, chosen per caller.

redis-py answers ``bytes`` (clients made without ``decode_responses``), and some
callers get ``str`` already (a decoding client, a value they passed in themselves), so
each function accepts both. Which policy a caller needs depends on where the bytes came
from and where the text goes:

* :func:`text` (strict UTF-8): values this project wrote itself (account fields,
  identities, statuses, catalog versions, script statuses). They are valid UTF-8; an
  undecodable byte means corrupt data and should fail loudly, not be papered over.
* :func:`lossy_text` (undecodable bytes become U+FFFD): values that are read to be
  shown or compared, where one bad byte must not fail the whole read (rated records,
  session ids in API answers, cached account fields). Anything that is not ``bytes``
  (``None``, an integer map key) is returned as it is.
* :func:`raw_text` (``surrogateescape``): values that go back to Redis as they came,
  such as sorted-set members to remove: ``raw_text(b).encode("utf-8",
  "surrogateescape") == b`` for any bytes, so even a member written by a foreign client
  with invalid UTF-8 is removed, not left behind.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

__all__ = ["lossy_text", "raw_text", "text"]

_T = TypeVar("_T")


def text(value: bytes | str) -> str:
    """``value`` decoded as strict UTF-8 (``UnicodeDecodeError`` on a bad byte); a
    ``str`` unchanged."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


@overload
def lossy_text(value: bytes) -> str: ...
@overload
def lossy_text(value: _T) -> _T: ...
def lossy_text(value: Any) -> Any:
    """``bytes`` decoded as UTF-8 with U+FFFD for what does not decode; anything else
    unchanged."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def raw_text(value: Any) -> str:
    """``bytes`` decoded losslessly (``surrogateescape``: encoding the text the same way
    gives the bytes back); anything else as ``str(value)``."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
