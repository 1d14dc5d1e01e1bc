"""Fixtures shared by the whole suite.

Redis: one private redis-server per test session (``redis_server``), started
the way ``ocs serve`` starts its embedded one, on a free port, without AOF;
``redis_url`` empties it before each test.
"""

from collections.abc import Callable, Iterator

import pytest
import redis

from ocs.embedded_redis import EmbeddedRedis
from tests.helpers import get_free_port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A private redis-server for the session (no persistence)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """URL of the session's redis-server, emptied (FLUSHALL) for this test."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def free_port() -> Callable[..., int]:
    """Factory: ``free_port()`` -> a TCP port free right now on 127.0.0.1."""
    return get_free_port
