"""``ocs serve`` with a port it cannot listen on (issue 13): exit 2 with one line saying
which listener and why, no traceback, and what had started stopped again (the Diameter
port free, the embedded Redis stopped), so the next start works."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ocs.config import Settings
from ocs.service import run


@pytest.fixture
def taken(free_port):
    """A port another process listens on."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", free_port()))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


def _free(port: int) -> bool:
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def test_an_http_port_in_use_exits_2_naming_it_and_stops_the_rest(
    taken, free_port, tmp_path: Path, capsys
):
    diameter = free_port()
    settings = Settings(
        redis_data_dir=str(tmp_path / "redis"),
        http_host="127.0.0.1",
        http_port=taken,
        diameter_host="127.0.0.1",
        diameter_port=diameter,
    )
    assert run(settings) == 2
    err = capsys.readouterr().err
    assert f"ocs serve: cannot listen for HTTP on 127.0.0.1:{taken}: " in err
    assert "in use" in err and "Traceback" not in err
    assert _free(diameter)  # the Diameter listener that had started is closed again


def test_a_diameter_port_in_use_exits_2_and_the_embedded_redis_is_stopped(
    taken, free_port, tmp_path: Path, capsys
):
    settings = Settings(
        redis_data_dir=str(tmp_path / "redis"),
        http_host="127.0.0.1",
        http_port=free_port(),
        diameter_host="127.0.0.1",
        diameter_port=taken,
    )
    assert run(settings) == 2
    err = capsys.readouterr().err
    assert f"ocs serve: cannot listen for Diameter on 127.0.0.1:{taken}: " in err
    assert "Traceback" not in err
    # the embedded Redis is gone with its lock: the same directory starts again
    again = Settings(
        redis_data_dir=str(tmp_path / "redis"),
        http_host="127.0.0.1",
        http_port=taken,
        diameter_host="127.0.0.1",
        diameter_port=free_port(),
    )
    assert run(again) == 2
    assert "cannot listen for HTTP" in capsys.readouterr().err
