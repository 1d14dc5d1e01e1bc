"""ocs.redis_store.open_store: the one way the OCS opens Redis (configured URL, private
server of the data directory, or the one a running node holds)."""

from __future__ import annotations

import pytest
import redis

from ocs.config import Settings
from ocs.embedded_redis import EmbeddedRedis
from ocs.redis_store import StoreUnavailable, open_store, running_embedded_url, tls_files
from quota_engine.store.connect import TlsFiles


async def test_the_configured_url(redis_url):
    async with open_store(Settings(redis_url=redis_url)) as client:
        assert await client.ping()
        await client.set("open-store", "x")
        assert await client.get("open-store") == b"x"


async def test_an_unreachable_url_is_reported_without_its_password(free_port):
    url = f"redis://ocs:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreUnavailable) as caught:
        async with open_store(Settings(redis_url=url)):
            pass
    message = str(caught.value)
    assert message.startswith("cannot reach Redis at redis://ocs:<hidden>@127.0.0.1:")
    assert "s3cret" not in message


async def test_without_url_a_private_server_lives_as_long_as_the_context(tmp_path):
    data_dir = tmp_path / "redis"
    async with open_store(Settings(redis_data_dir=str(data_dir))) as client:
        await client.set("k", "v")
        assert running_embedded_url(data_dir) is not None
    assert running_embedded_url(data_dir) is None  # stopped
    async with open_store(Settings(redis_data_dir=str(data_dir))) as client:
        assert await client.get("k") == b"v"  # its AOF kept the data


async def test_share_running_uses_the_server_a_node_holds(tmp_path):
    data_dir = tmp_path / "redis"
    settings = Settings(redis_data_dir=str(data_dir))
    with EmbeddedRedis(data_dir) as server:
        async with open_store(settings, share_running=True) as client:
            assert await client.set("shared", "1")
        with redis.Redis.from_url(server.url) as direct:
            assert direct.get("shared") == b"1"
        # without share_running the directory is locked by that server: refused, clearly
        with pytest.raises(StoreUnavailable) as caught:
            async with open_store(settings):
                pass
        assert f"the private Redis of {data_dir} cannot be used" in str(caught.value)
        assert "--redis-url" in str(caught.value)


def test_tls_files_of_the_settings():
    assert tls_files(Settings()) is None
    settings = Settings(
        redis_url="rediss://redis.example:6380/0",
        redis_tls_ca_file="ca.pem",
        redis_tls_cert_file="c.pem",
        redis_tls_key_file="k.pem",
    )
    assert tls_files(settings) == TlsFiles("ca.pem", "c.pem", "k.pem")


def test_serve_with_an_unreachable_redis_exits_2_with_the_reason(capsys, free_port):
    from ocs.service import run

    url = f"redis://ocs:s3cret@127.0.0.1:{free_port()}/0"
    assert run(Settings(redis_url=url, http_port=free_port(), diameter_port=free_port())) == 2
    err = capsys.readouterr().err
    assert "ocs serve: cannot reach Redis at redis://ocs:<hidden>@127.0.0.1:" in err
    assert "s3cret" not in err
