"""Small helpers shared by test modules (import them; fixtures live in conftest.py)."""

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

from ocs.config import Settings
from ocs.embedded_redis import free_tcp_port

ROOT = Path(__file__).resolve().parent.parent
"""The checkout's top directory (docs/, loadtest/scenarios/, ...)."""


def get_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (another process may still take it)."""
    return free_tcp_port(host)


def stop_process(process: subprocess.Popen[str], timeout: float = 15) -> None:
    """SIGTERM a child still running (so that it stops its embedded Redis too), then
    SIGKILL it when it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def node_settings(**overrides: Any) -> Settings:
    """The settings of a test node: Diameter on 127.0.0.1 at a port the system picks,
    Origin-Host ocs.test.net in realm test.net; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "diameter_host": "127.0.0.1",
        "diameter_port": 0,
        "diameter_origin_host": "ocs.test.net",
        "diameter_origin_realm": "test.net",
    }
    return dataclasses.replace(Settings(), **{**fields, **overrides})
