"""ocs.service.link_to: the charging hot path's RedisLink goes where redis-py goes."""

from __future__ import annotations

import redis.asyncio as aioredis

from ocs.service import link_to
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
