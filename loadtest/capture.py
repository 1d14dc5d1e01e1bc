"""Capture: a transparent Diameter TCP proxy that records the requests it forwards.

``ocs-loadtest capture --listen 3869 --forward ocs-host:3868 --out today.trace``: point
the network elements (or a copy of their traffic) at the listen port; every byte goes
to the OCS and back unchanged (CER/CEA included, so the client and the OCS negotiate
with each other as if directly connected), and each request the client sends is
written to the trace file (:mod:`loadtest.trace`) with its arrival time and its
connection number. Base-protocol requests (CER, DWR, DPR) are left out unless
``--all`` is given, which also records the server's messages (direction 1).

It is not a Diameter agent: it adds no Route-Record and keeps no state beyond the
framing needed to cut the byte stream into messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import time
from collections.abc import Callable

from protocol.framing import Framer, FramingError, Oversized

from .trace import TO_CLIENT, TO_SERVER, TraceWriter

__all__ = ["CaptureProxy"]

logger = logging.getLogger("loadtest.capture")
_BASE_COMMANDS = frozenset({257, 280, 282})
_MAX_MESSAGE = 16 * 1024 * 1024


class CaptureProxy:
    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        forward_host: str,
        forward_port: int,
        writer: TraceWriter,
        record_all: bool = False,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.listen = (listen_host, listen_port)
        self.forward = (forward_host, forward_port)
        self.writer = writer
        self.record_all = record_all
        self.clock = clock
        self.connections = 0
        self.active = 0
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, *self.listen)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.writer.flush()

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        connection = next(self._ids)
        self.connections += 1
        self.active += 1
        peer = client_writer.get_extra_info("peername")
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.forward)
        except OSError as exc:
            logger.warning("capture_forward_failed connection=%d error=%s", connection, exc)
            client_writer.close()
            self.active -= 1
            if task is not None:
                self._tasks.discard(task)
            return
        logger.info("capture_connection connection=%d client=%s", connection, peer)
        upstream = asyncio.create_task(
            self._pump(client_reader, server_writer, connection, TO_SERVER)
        )
        downstream = asyncio.create_task(
            self._pump(server_reader, client_writer, connection, TO_CLIENT)
        )
        try:
            await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in (upstream, downstream):
                pump.cancel()
            await asyncio.gather(upstream, downstream, return_exceptions=True)
            for writer in (client_writer, server_writer):
                with contextlib.suppress(Exception):
                    writer.close()
            self.active -= 1
            if task is not None:
                self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: int,
        direction: int,
    ) -> None:
        framer = Framer(_MAX_MESSAGE)
        record = direction == TO_SERVER or self.record_all
        framing = True
        while True:
            data = await reader.read(65536)
            if not data:
                with contextlib.suppress(Exception):
                    writer.write_eof()
                return
            if record and framing:
                now = self.clock()
                try:
                    items = framer.feed(data)
                except FramingError as exc:
                    logger.warning(
                        "capture_unframeable connection=%d error=%s: recording stops",
                        connection,
                        exc,
                    )
                    framing = False
                    items = []
                for item in items:
                    if isinstance(item, Oversized):
                        continue
                    if self._wanted(item, direction):
                        self.writer.write(now, connection, direction, item)
            writer.write(data)
            await writer.drain()

    def _wanted(self, message: bytes, direction: int) -> bool:
        if self.record_all:
            return True
        is_request = bool(message[4] & 0x80)
        command = int.from_bytes(message[5:8], "big")
        return direction == TO_SERVER and is_request and command not in _BASE_COMMANDS


async def run_capture(
    listen_host: str,
    listen_port: int,
    forward_host: str,
    forward_port: int,
    out: str,
    record_all: bool = False,
    duration: float | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Run the proxy until SIGINT/SIGTERM (or ``duration`` seconds); records written."""
    writer = TraceWriter(
        out,
        {
            "tool": "ocs-loadtest capture",
            "listen": f"{listen_host}:{listen_port}",
            "forward": f"{forward_host}:{forward_port}",
            "all": record_all,
        },
    )
    proxy = CaptureProxy(listen_host, listen_port, forward_host, forward_port, writer, record_all)
    await proxy.start()
    log(
        f"capturing: listening on {listen_host}:{proxy.port}, forwarding to "
        f"{forward_host}:{forward_port}, writing {out}"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        while not stop.is_set():
            timeout = 1.0
            if duration is not None:
                timeout = min(timeout, max(0.0, started + duration - time.monotonic()))
                if timeout <= 0:
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            writer.flush()
    finally:
        await proxy.close()
        writer.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    log(f"captured {writer.records} messages from {proxy.connections} connection(s) to {out}")
    return writer.records
