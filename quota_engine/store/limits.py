"""What the store can hold exactly.

Lua numbers are doubles, so every amount, unit count and timestamp the scripts handle
must stay at or below 2**53 - 1, the largest integer a double holds exactly (about
9e9 currency units in micro-units, or 8 PiB in octets). Validation refuses larger
values before they reach a script (lib.lua has the same constant).
"""

from __future__ import annotations

__all__ = ["MAX_AMOUNT"]

MAX_AMOUNT = 2**53 - 1
"""The largest integer amount the store keeps exact (Lua numbers are doubles)."""
