"""Small helpers shared by test modules (import them; fixtures live in conftest.py)."""

import subprocess
from pathlib import Path

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
