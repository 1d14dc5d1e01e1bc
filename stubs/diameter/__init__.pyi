# Partial stubs for python-diameter (import name `diameter`), which ships no type
# information: only what gives our code types it can check. Everything else stays Any.
from typing import Any

def __getattr__(name: str) -> Any: ...
