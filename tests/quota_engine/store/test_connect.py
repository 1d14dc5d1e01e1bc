"""quota_engine.store.connect: the client every part uses (retry policy, TLS, one PING),
and link_to: the charging hot path's RedisLink goes where redis-py goes."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from quota_engine.store.connect import (
    RedisUnreachable,
    TlsFiles,
    connect,
    link_to,
    redis_client,
    retry_policy,
)
from quota_engine.store.redis_link import RedisAddress


def test_the_link_takes_the_stores_address_database_and_credentials():
    store = aioredis.Redis.from_url("redis://ocs:secret@10.0.0.7:6380/3")
    link = link_to(store)
    assert link is not None
    assert link.address == RedisAddress(
        host="10.0.0.7", port=6380, db=3, username="ocs", password="secret"
    )


def test_a_unix_socket_store_gives_a_unix_socket_link():
    store = aioredis.Redis.from_url("unix:///run/redis/redis.sock?db=2")
    link = link_to(store)
    assert link is not None and (link.address.path, link.address.db) == ("/run/redis/redis.sock", 2)


def test_a_tls_store_keeps_the_hot_path_on_redis_py():
    assert link_to(aioredis.Redis.from_url("rediss://redis.example:6380/0")) is None


async def names_connected(r) -> list[str]:
    return [entry["name"] for entry in await r.client_list()]


async def test_connect_pings_and_closes(redis_url, r):
    async with connect(redis_url) as client:
        await client.client_setname("connect-test")
        assert await client.set("connect-test", b"1")
        assert await client.get("connect-test") == b"1"  # bytes: the engine needs them
        assert "connect-test" in await names_connected(r)
    assert "connect-test" not in await names_connected(r)


async def test_connect_to_nothing_fails_with_the_cause_and_without_the_url(free_port):
    url = f"redis://ocs:secret@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnreachable) as caught:
        async with connect(url):
            pass
    assert isinstance(caught.value.cause, (RedisConnectionError, OSError))
    assert "secret" not in str(caught.value)


def test_the_client_retries_once_on_a_lost_connection_only():
    policy = retry_policy()
    assert policy.get_retries() == 1
    assert redis_client("redis://127.0.0.1:6379/0").get_retry().get_retries() == 1


def test_tls_files_go_to_a_rediss_client_only():
    tls = TlsFiles(ca_file="/etc/ca.pem", cert_file="/etc/c.pem", key_file="/etc/k.pem")
    options = redis_client("rediss://redis.example:6380/0", tls).connection_pool.connection_kwargs
    assert (options["ssl_ca_certs"], options["ssl_certfile"], options["ssl_keyfile"]) == (
        "/etc/ca.pem",
        "/etc/c.pem",
        "/etc/k.pem",
    )
    assert (
        "ssl_ca_certs"
        not in redis_client("rediss://redis.example:6380/0").connection_pool.connection_kwargs
    )
    with pytest.raises(ValueError, match="rediss://"):
        redis_client("redis://redis.example:6379/0", tls)
