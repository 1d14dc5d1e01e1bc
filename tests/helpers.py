"""Small helpers shared by test modules (import them; fixtures live in conftest.py)."""

import dataclasses
import os
import subprocess
import sys
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


@dataclasses.dataclass
class ServeProcess:
    """A running ``python -m ocs serve`` (:func:`start_ocs_serve`) and its ports."""

    process: subprocess.Popen[str]
    diameter_port: int
    http_port: int
    started: list[str]
    """What it printed on standard output up to and including "HTTP listening"."""


def start_ocs_serve(
    cwd: Path,
    *flags: str,
    env: dict[str, str] | None = None,
    stderr: Any = subprocess.PIPE,
    origin: str = "ocs.serve.test",
) -> ServeProcess:
    """Start ``python -m ocs serve`` of this checkout in ``cwd`` on free ports of
    127.0.0.1 (Origin-Host ``origin``, its realm the rest of it), without the caller's
    ``OCS_*`` variables but with ``env``, and wait until it serves HTTP; ``flags`` are
    more command-line flags. Stop it with :func:`stop_process`."""
    diameter_port, http_port = get_free_port(), get_free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")}
    command = [
        sys.executable, "-m", "ocs", "serve", "--diameter-host=127.0.0.1",
        f"--diameter-port={diameter_port}", "--http-host=127.0.0.1",
        f"--http-port={http_port}", f"--diameter-origin-host={origin}",
        f"--diameter-origin-realm={origin.partition('.')[2]}", *flags,
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=clean | {"PYTHONPATH": str(ROOT)} | (env or {}),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert process.stdout is not None
    started = []
    while True:
        line = process.stdout.readline()
        if not line:
            stop_process(process)
            problem = process.stderr.read() if process.stderr is not None else "(see its log)"
            raise AssertionError(f"ocs serve exited early: {problem}")
        started.append(line)
        if line.startswith("HTTP listening"):
            return ServeProcess(process, diameter_port, http_port, started)
