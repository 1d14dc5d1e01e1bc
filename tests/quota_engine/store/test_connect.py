"""quota_engine.store.connect: the client every part uses (retry policy, TLS, one PING),
and link_to: the charging hot path's RedisLink goes where redis-py goes."""

from __future__ import annotations

import asyncio

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


class CuttingProxy:
    """A TCP proxy in front of Redis that closes the client's connection instead of
    passing on the next ``cuts`` replies (Redis ran the command; the reply is lost)."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.cuts = 0
        self.connections = 0

    async def serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        self.connections += 1
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.redis_port)

        async def upstream() -> None:
            while data := await client_r.read(65536):
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if self.cuts > 0:
                    self.cuts -= 1
                    return
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        client_w.close()
        server_w.close()


@pytest.mark.parametrize("cuts, retried", [(1, True), (2, False)])
async def test_a_command_whose_connection_is_lost_is_sent_once_more(redis_url, cuts, retried):
    """One retry, on a new connection: a single lost reply is invisible to the caller,
    two in a row raise (the policy must be redis-py's asyncio Retry: the synchronous
    one is accepted by the asyncio client and never retries)."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = CuttingProxy(port)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()
    client = redis_client(f"redis://{address[0]}:{address[1]}/0")
    try:
        assert await client.ping()
        assert proxy.connections == 1
        proxy.cuts = cuts  # the next replies are lost
        if retried:
            assert await client.incr("retry-test") >= 1
        else:
            with pytest.raises(RedisConnectionError):
                await client.incr("retry-test")
        assert proxy.connections == 2  # one new connection for the one retry
    finally:
        await client.aclose()
        server.close()


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
