"""`ocs serve` as a real process under the limits an operator sets (issue 13 items 5, 7):

* with a low descriptor limit (``ulimit -n``, set in the child) and many idle and slow
  HTTP clients, a Diameter peer still connects and gets CEA 2001, because HTTP never
  holds more than ``http.max_connections`` descriptors;
* under ``MemoryDenyWriteExecute=`` of deploy/systemd/ocs.service (the kernel's
  ``PR_SET_MDWE``, which refuses writable executable memory to the process and its
  children the same way), the node starts, with its embedded redis-server, and charges.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import http.client
import os
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, get_free_port, stop_process
from tests.protocol.reference_peer import ReferencePeer

#: Descriptors the child may open: a node with export off needs about 30.
FD_LIMIT = 96
MAX_CONNECTIONS = 16
#: HTTP clients opened against it: well above what FD_LIMIT would allow.
CLIENTS = 150


@contextlib.contextmanager
def ocs_serve(
    tmp_path: Path, *flags: str, preexec: Callable[[], None] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    diameter_port, http_port = get_free_port(), get_free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")} | {
        "PYTHONPATH": str(ROOT)
    }
    process = subprocess.Popen(
        [
            sys.executable, "-m", "ocs", "serve",
            "--diameter-host=127.0.0.1", f"--diameter-port={diameter_port}",
            "--http-host=127.0.0.1", f"--http-port={http_port}",
            f"--redis-data-dir={tmp_path / 'redis'}",
            "--diameter-origin-host=ocs.hygiene.test", "--diameter-origin-realm=hygiene.test",
            *flags,
        ],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=preexec,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stderr is not None
        while True:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"ocs serve exited early: {process.stderr.read()}")
            if line.startswith("HTTP listening"):
                break
        yield process, diameter_port, http_port
    finally:
        stop_process(process)


def metric(port: int, line_start: str) -> float:
    """The sum of the samples whose line starts with ``line_start``; retried while the
    node has not yet seen the clients that closed (their slots are still taken)."""
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
            break
        except (ConnectionError, http.client.RemoteDisconnected):
            time.sleep(0.1)
    else:
        raise AssertionError("the node never served /metrics again")
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)
    )


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


async def is_closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.05) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def test_idle_and_slow_http_clients_leave_descriptors_for_diameter(tmp_path):
    with ocs_serve(
        tmp_path,
        "--records-export=off",
        f"--http-max-connections={MAX_CONNECTIONS}",
        # neither timeout frees anything during the test: only the bound does
        "--http-keepalive-timeout=300",
        "--http-request-timeout=300",
        preexec=low_fd_limit,
    ) as (process, diameter_port, http_port):
        clients = []
        for n in range(CLIENTS):
            reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
            if n % 2:  # slow: half a request line; the others idle
                writer.write(b"GET /heal")
            clients.append((reader, writer))
        peer = await ReferencePeer.connect("127.0.0.1", diameter_port)
        cea = await peer.open()
        assert cea.result_code == 2001
        await peer.close()
        open_ = [n for n, (reader, _) in enumerate(clients) if not await is_closed(reader)]
        assert len(open_) <= MAX_CONNECTIONS
        for _, writer in clients:
            writer.close()
        refused = await asyncio.to_thread(metric, http_port, "ocs_http_connections_refused_total")
        assert refused >= CLIENTS - MAX_CONNECTIONS
        assert process.poll() is None


_PR_SET_MDWE = 65
_PR_MDWE_REFUSE_EXEC_GAIN = 1


def memory_deny_write_execute() -> None:
    """In the child before exec: refuse writable executable memory from now on (inherited
    by the embedded redis-server); exit 97 if the kernel refuses the prctl."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_MDWE, _PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        os._exit(97)


def _mdwe_supported() -> bool:
    # PR_GET_MDWE (66) exists from Linux 6.3
    return ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) >= 0


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _mdwe_supported(),
    reason="the kernel has no PR_SET_MDWE (Linux 6.3+): cannot check MemoryDenyWriteExecute",
)
async def test_the_node_runs_and_charges_without_writable_executable_memory(tmp_path):
    from tests.charging import messages as m

    with ocs_serve(tmp_path, preexec=memory_deny_write_execute) as (
        process,
        diameter_port,
        http_port,
    ):
        peer = await ReferencePeer.connect("127.0.0.1", diameter_port)
        assert (await peer.open()).result_code == 2001
        answer = await peer.request(
            m.ccr(
                "pgw.test.net;mdwe;1",
                subscriptions=(("msisdn", "491700000001"),),
                services=[m.mscc(10, requested=m.rsu(octets=m.MIB))],
            )
        )
        assert answer.result_code == 2001
        await peer.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/livez", timeout=5) as reply:
            assert reply.status == 200
        assert process.poll() is None
