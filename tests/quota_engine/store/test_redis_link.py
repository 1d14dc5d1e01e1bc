"""RedisLink (quota_engine/store/redis_link.py) against the session's private redis-server:
pipelines and their replies, many pipelines in flight on one connection, error
replies, scripts through LuaScript and ScriptPipeline, a connection lost mid-flight,
cancellation, AUTH, SELECT, Unix sockets, back-pressure and a large pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import hiredis
import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    DataError,
    NoScriptError,
    ResponseError,
)

from quota_engine.store.redis_link import (
    LinkPipeline,
    RedisAddress,
    RedisLink,
    _pack_resp,
    pack_command,
    parse_url,
)
from quota_engine.store.scripts import LuaScript, ScriptPipeline

NAME = "ocs-link-test"


@pytest.fixture
async def link(redis_url: str) -> AsyncIterator[RedisLink]:
    link = await RedisLink.connect(redis_url, client_name=NAME)
    yield link
    await link.aclose()


@pytest.fixture
async def other(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A redis-py client to check and disturb the link from the outside."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def link_client(other: aioredis.Redis, name: str = NAME) -> dict | None:
    """The CLIENT LIST entry of the connection called ``name``."""
    clients = [c for c in await other.client_list() if c.get("name") == name]
    assert len(clients) <= 1, clients
    return clients[0] if clients else None


async def wait_until_blocked(other: aioredis.Redis) -> dict:
    """Wait until the link's connection is blocked in BLPOP; its CLIENT LIST entry."""
    for _ in range(500):
        entry = await link_client(other)
        if entry is not None and entry.get("cmd") == "blpop":
            return entry
        await asyncio.sleep(0.01)
    raise AssertionError("the link never blocked in BLPOP")


# ---------------------------------------------------------------------- URLs, packing


def test_parse_url() -> None:
    assert parse_url("redis://10.0.0.1:6380/2") == RedisAddress("10.0.0.1", 6380, db=2)
    assert parse_url("redis://h") == RedisAddress("h", 6379)
    assert parse_url("redis://h?db=4") == RedisAddress("h", 6379, db=4)
    address = parse_url("redis://:s%40cret@h:1/0")
    assert (address.username, address.password) == (None, "s@cret")
    address = parse_url("redis://ocs:pw@h:1/3")
    assert (address.username, address.password, address.db) == ("ocs", "pw", 3)
    assert parse_url("unix:///run/redis.sock?db=5") == RedisAddress(path="/run/redis.sock", db=5)
    address = parse_url("unix:///run/redis.sock?password=pw")
    assert (address.path, address.password, address.db) == ("/run/redis.sock", "pw", 0)
    assert "pw" not in repr(parse_url("redis://:pw@h")) + str(parse_url("redis://:pw@h"))
    for bad in ("rediss://h", "http://h", "redis://h/x", "redis://user@h", "unix://?db=1"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_packing_matches_hiredis_and_redis_py_rules() -> None:
    args = ("SET", b"k\r\n\x00", "é", 42, -7, 0.1, 1e20, 2**70)
    assert _pack_resp(args) == hiredis.pack_command(args)
    assert _pack_resp(args) == (
        b"*8\r\n$3\r\nSET\r\n$4\r\nk\r\n\x00\r\n$2\r\n\xc3\xa9\r\n$2\r\n42\r\n$2\r\n-7\r\n"
        b"$3\r\n0.1\r\n$5\r\n1e+20\r\n$22\r\n1180591620717411303424\r\n"
    )
    assert pack_command(("SET", memoryview(b"ab"), bytearray(b"cd"))) == _pack_resp(
        ("SET", b"ab", b"cd")
    )
    for bad in (True, None, object()):
        with pytest.raises(DataError):
            pack_command(("SET", "k", bad))


# ---------------------------------------------------------------------- pipelines


async def test_pipeline_of_mixed_commands(link: RedisLink, other: aioredis.Redis) -> None:
    await other.hset("h", mapping={"fa": "1", "fb": b"\xff\x00"})
    await other.set("str", "text")
    await other.zadd("z", {"old": 1, "gone": 2})
    pipe = link.pipeline(transaction=False)
    assert isinstance(pipe, LinkPipeline)
    pipe.get("str").get("missing")
    pipe.hmget("h", ["fa", "nope", "fb"]).hmget("h", "fb")
    pipe.hgetall("h")
    pipe.zadd("z", {"new": 5, b"old": 7.5})
    pipe.zrem("z", "gone", "never")
    pipe.execute_command("INCRBY", "n", 41)
    pipe.execute_command("RPUSH", "l", 1, 2)
    pipe.execute_command("LRANGE", "l", 0, -1)
    pipe.execute_command("SET", "t", "x")
    assert len(pipe) == 11
    replies = await pipe.execute()
    assert replies == [
        b"text",
        None,
        [b"1", None, b"\xff\x00"],
        [b"\xff\x00"],
        {b"fa": b"1", b"fb": b"\xff\x00"},
        1,
        1,
        41,
        2,
        [b"1", b"2"],
        b"OK",
    ]
    assert len(pipe) == 0 and await pipe.execute() == []
    assert await other.zrange("z", 0, -1, withscores=True) == [(b"new", 5.0), (b"old", 7.5)]
    assert await other.get("t") == b"x"
    # the pipeline is reusable after execute
    assert await pipe.get("t").execute() == [b"x"]


async def test_hgetall_gives_a_dict(link: RedisLink, other: aioredis.Redis) -> None:
    fields = {f"f{i}".encode(): str(i).encode() * i for i in range(50)}
    await other.hset("h", mapping=fields)
    await other.set("plain", "x")
    pipe = link.pipeline()
    pipe.hgetall("h").hgetall("missing").get("plain").hgetall("plain")
    replies = await pipe.execute(raise_on_error=False)
    assert replies[0] == fields == await other.hgetall("h")
    assert replies[1] == {}
    assert replies[2] == b"x"
    assert isinstance(replies[3], ResponseError) and "WRONGTYPE" in str(replies[3])


async def test_many_pipelines_in_flight_on_one_connection(
    link: RedisLink, other: aioredis.Redis
) -> None:
    async def one(i: int) -> list:
        pipe = link.pipeline()
        pipe.execute_command("SET", f"k{i}", f"value-{i}" * (i % 5 + 1))
        pipe.execute_command("INCRBY", f"n{i}", i)
        for _ in range(i % 7):  # pipelines of different lengths
            pipe.get(f"k{i}")
        pipe.hmget(f"h{i}", ["x"])
        return await pipe.execute()

    protocol = link._protocol
    assert protocol is not None and protocol._transport is not None
    transport = protocol._transport
    writes = []
    real_write = transport.write

    def write(data: bytes) -> None:  # one write per pipeline
        writes.append(data.count(b"\r\n*") + 1)
        real_write(data)

    transport.write = write  # type: ignore[method-assign]
    tasks = [asyncio.ensure_future(one(i)) for i in range(200)]
    await asyncio.sleep(0)  # every task wrote its pipeline; no reply was read yet
    assert link.in_flight == 200
    results = await asyncio.gather(*tasks)
    assert link.in_flight == 0
    assert writes == [3 + i % 7 for i in range(200)]
    for i, replies in enumerate(results):
        value = f"value-{i}".encode() * (i % 5 + 1)
        assert replies == [b"OK", i] + [value] * (i % 7) + [[None]], i
    clients = await other.client_list()
    assert [c["name"] for c in clients].count(NAME) == 1


async def test_error_replies_in_place_or_raised(link: RedisLink, other: aioredis.Redis) -> None:
    def queue() -> LinkPipeline:
        pipe = link.pipeline()
        pipe.execute_command("SET", "k", "v")
        pipe.execute_command("LPUSH", "k", "x")
        pipe.execute_command("EVALSHA", "0" * 40, 0)
        pipe.execute_command("INCR", "after")
        return pipe

    replies = await queue().execute(raise_on_error=False)
    assert replies[0] == b"OK" and replies[3] == 1
    assert type(replies[1]) is ResponseError
    assert str(replies[1]).startswith("WRONGTYPE Operation against a key")
    assert isinstance(replies[2], NoScriptError)
    with pytest.raises(ResponseError, match=r"Command # 2 \(LPUSH\).*WRONGTYPE") as raised:
        await queue().execute()
    assert not isinstance(raised.value, NoScriptError)
    assert await other.get("after") == b"2"  # the commands after the error ran
    # single commands raise; an unknown command is an ERR reply, stripped as redis-py does
    with pytest.raises(ResponseError, match="^unknown command") as raised:
        await link.execute_command("NOSUCHCOMMAND")
    with pytest.raises(NoScriptError):
        await link.evalsha("0" * 40, 0)
    assert await link.ping() is True


async def test_transactions_are_refused(link: RedisLink) -> None:
    with pytest.raises(NotImplementedError):
        link.pipeline(transaction=True)
    with pytest.raises(DataError):
        link.pipeline().zadd("z", {})


# ---------------------------------------------------------------------- scripts


async def test_script_pipeline_loads_and_reruns(link: RedisLink, other: aioredis.Redis) -> None:
    echo = LuaScript("return ARGV[1]", "echo")
    incr = LuaScript("return redis.call('INCRBY', KEYS[1], ARGV[1])", "incr")
    fail = LuaScript("return redis.error_reply('BAD thing')", "fail")
    await other.script_flush()
    pipe = ScriptPipeline(link)
    assert pipe.script(echo, [], ["one"]) == 0
    assert pipe.command("SET", "plain", "p") == 1
    assert pipe.script(incr, ["counter"], [5]) == 2
    assert pipe.script(echo, [], [b"\x00two"]) == 3
    assert pipe.script(fail, [], []) == 4
    results = await pipe.execute()
    assert results[:4] == [b"one", b"OK", 5, b"\x00two"]
    assert isinstance(results[4], ResponseError) and "BAD thing" in str(results[4])
    assert await other.script_exists(echo.sha, incr.sha, fail.sha) == [True, True, True]
    assert await other.get("counter") == b"5"  # run once, after its load
    # now known: no reload, same answers
    pipe.script(incr, ["counter"], [1])
    pipe.script(echo, [], ["again"])
    assert await pipe.execute() == [6, b"again"]


async def test_lua_script_call_on_a_link(link: RedisLink, other: aioredis.Redis) -> None:
    script = LuaScript("return {redis.call('GET', KEYS[1]), ARGV[1]}", "pair")
    await other.set("key", "stored")
    await other.script_flush()
    assert await script(link, ["key"], ["arg"]) == [b"stored", b"arg"]
    assert await other.script_exists(script.sha) == [True]
    assert await script(link, ["key"], [7]) == [b"stored", b"7"]
    with pytest.raises(ResponseError):
        await LuaScript("return redis.call('NOPE')", "bad")(link)


# ---------------------------------------------------------------------- connection


async def test_connection_lost_fails_pending_and_next_call_reconnects(
    link: RedisLink, other: aioredis.Redis
) -> None:
    first_id = await link.execute_command("CLIENT", "ID")
    blocked = asyncio.ensure_future(link.execute_command("BLPOP", "never", 10))
    behind = asyncio.ensure_future(link.pipeline().get("x").get("y").execute())
    entry = await wait_until_blocked(other)
    assert int(entry["id"]) == first_id
    assert link.in_flight == 2
    await other.execute_command("CLIENT", "KILL", "ID", first_id)
    for task in (blocked, behind):
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(task, 5)
    assert not link.connected and link.in_flight == 0
    await other.set("x", "back")
    assert await link.pipeline().get("x").execute() == [b"back"]
    assert link.connected
    assert await link.execute_command("CLIENT", "ID") != first_id
    entry = await link_client(other)  # the new connection has its name again
    assert entry is not None and int(entry["id"]) != first_id


async def test_cancelled_call_keeps_the_connection_in_step(
    link: RedisLink, other: aioredis.Redis
) -> None:
    blocked = asyncio.ensure_future(link.execute_command("BLPOP", "list", 10))
    await wait_until_blocked(other)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    await other.set("x", "mine")
    behind = asyncio.ensure_future(link.pipeline().get("x").execute_command("PING").execute())
    await asyncio.sleep(0.05)
    assert not behind.done()  # queued behind the BLPOP
    await other.rpush("list", "for-the-cancelled-call")
    assert await asyncio.wait_for(behind, 5) == [b"mine", b"PONG"]
    assert await link.execute_command("LLEN", "list") == 0  # the BLPOP did run


async def test_connection_refused_and_lazy_connect(free_port) -> None:
    port = free_port()
    link = RedisLink.from_url(f"redis://127.0.0.1:{port}/0", connect_timeout=2)
    assert not link.connected  # from_url does not connect
    with pytest.raises(ConnectionError, match=f"cannot connect to Redis at 127.0.0.1:{port}"):
        await link.ping()
    with pytest.raises(ConnectionError):  # each call tries again
        await link.pipeline().get("x").execute()
    with pytest.raises(ConnectionError):
        await RedisLink.connect(f"redis://127.0.0.1:{port}")


async def test_connect_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="timed out"):
            # the password makes the link wait for AUTH's reply, which never comes
            await RedisLink.connect(f"redis://:pw@127.0.0.1:{port}", connect_timeout=0.2)
        assert time.monotonic() - started < 2
        assert len(accepted) == 1  # it did connect; the handshake timed out
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_aclose(redis_url: str) -> None:
    link = await RedisLink.connect(redis_url)
    blocked = asyncio.ensure_future(link.execute_command("BLPOP", "never", 10))
    await asyncio.sleep(0.05)
    await link.aclose()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(blocked, 5)
    with pytest.raises(ConnectionError, match="closed"):
        await link.ping()
    async with RedisLink.from_url(redis_url) as link:
        assert link.connected and await link.ping()
    assert not link.connected


async def test_auth_with_password(redis_url: str, other: aioredis.Redis) -> None:
    parts = urlsplit(redis_url)
    await other.config_set("requirepass", "s3cret!")
    try:
        good = await RedisLink.connect(f"redis://:s3cret%21@{parts.netloc}/0")
        try:
            assert await good.ping()
            await good.execute_command("SET", "k", "v")
            assert await good.pipeline().get("k").execute() == [b"v"]
        finally:
            await good.aclose()
        with pytest.raises(AuthenticationError, match="AUTH failed.*WRONGPASS"):
            await RedisLink.connect(f"redis://:wrong@{parts.netloc}/0")
        anonymous = await RedisLink.connect(redis_url)
        try:
            with pytest.raises(ResponseError, match="NOAUTH"):
                await anonymous.ping()
        finally:
            await anonymous.aclose()
    finally:
        admin = aioredis.Redis.from_url(f"redis://:s3cret%21@{parts.netloc}/0")
        try:
            await admin.config_set("requirepass", "")
        finally:
            await admin.aclose()
    await other.execute_command("ACL", "SETUSER", "ocs", "on", ">userpw", "~*", "+@all")
    try:
        user = await RedisLink.connect(f"redis://ocs:userpw@{parts.netloc}/0")
        try:
            assert await user.execute_command("ACL", "WHOAMI") == b"ocs"
        finally:
            await user.aclose()
        with pytest.raises(AuthenticationError):
            await RedisLink.connect(f"redis://ocs:nope@{parts.netloc}/0")
    finally:
        await other.execute_command("ACL", "DELUSER", "ocs")


async def test_select_db_from_url(redis_url: str, other: aioredis.Redis) -> None:
    base = redis_url.rsplit("/", 1)[0]
    for url, db in ((f"{base}/3", 3), (f"{base}/0?db=5", 5)):
        async with RedisLink.from_url(url) as link:
            await link.pipeline().execute_command("SET", "where", db).execute()
    assert await other.get("where") is None
    for db in (3, 5):
        client = aioredis.Redis.from_url(f"{base}/{db}")
        try:
            assert await client.get("where") == str(db).encode()
        finally:
            await client.aclose()


@pytest.fixture
def unix_redis() -> Iterator[str]:
    """A redis-server of its own listening on a Unix socket only; its socket path."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH")
    with tempfile.TemporaryDirectory(prefix="rl") as tmp:
        sock = Path(tmp) / "r.sock"
        args = [binary, "--port", "0", "--unixsocket", str(sock), "--save", ""]
        args += ["--appendonly", "no", "--dir", tmp]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(unix_socket_path=str(sock))
        try:
            for _ in range(500):  # until it answers
                with contextlib.suppress(ConnectionError):
                    if probe.ping():
                        break
                time.sleep(0.01)
            probe.close()
            yield str(sock)
        finally:
            process.terminate()
            process.wait(10)


async def test_unix_socket(unix_redis: str) -> None:
    async with RedisLink.from_url(f"unix://{unix_redis}?db=2") as link:
        await link.execute_command("SET", "k", "over unix")
        assert await link.pipeline().get("k").execute() == [b"over unix"]
    client = aioredis.Redis(unix_socket_path=unix_redis, db=2)
    try:
        assert await client.get("k") == b"over unix"
    finally:
        await client.aclose()


# ---------------------------------------------------------------------- volume


async def test_large_pipeline_round_trips(link: RedisLink, other: aioredis.Redis) -> None:
    count = 20_000
    pipe = link.pipeline()
    for i in range(count):
        pipe.execute_command("SET", f"big:{i}", f"{i:08d}".encode() * 25)  # 200 bytes
    for i in range(count):
        pipe.get(f"big:{i}")
    replies = await pipe.execute()
    assert replies[:count] == [b"OK"] * count
    assert replies[count:] == [f"{i:08d}".encode() * 25 for i in range(count)]
    assert await other.dbsize() == count
    assert await link.ping()


async def test_back_pressure_waits_for_drain(link: RedisLink, other: aioredis.Redis) -> None:
    # the transport calls pause_writing/resume_writing around its high-water mark;
    # here they are called directly, as the transport would
    protocol = link._protocol
    assert protocol is not None
    protocol.pause_writing()
    task = asyncio.ensure_future(link.pipeline().execute_command("SET", "k", "v").execute())
    await asyncio.sleep(0.05)
    assert not task.done() and link.in_flight == 0  # not written
    assert await other.get("k") is None
    protocol.resume_writing()
    assert await asyncio.wait_for(task, 5) == [b"OK"]
    # several big pipelines at once really cross the high-water mark
    payload = b"x" * 100_000

    async def big(n: int) -> list:
        pipe = link.pipeline()
        for i in range(50):
            pipe.execute_command("SET", f"b{n}:{i}", payload)
        pipe.execute_command("STRLEN", f"b{n}:49")
        return await pipe.execute()

    results = await asyncio.gather(*(big(n) for n in range(20)))
    assert all(r == [b"OK"] * 50 + [100_000] for r in results)
