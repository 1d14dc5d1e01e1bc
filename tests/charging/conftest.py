"""End-to-end charging: the real Diameter node, the real charging engine and a real
Redis (tests/conftest.py ``redis_url``), with python-diameter as the network element.

``ocs`` starts one node on a free port: ``build_node`` with the credit-control
application wired to a :class:`ChargingEngine` over the demo catalog (plus one plan,
``prepaid-redirect``, whose final unit action is a redirect), and the
:class:`Notifier` for RAR/ASR. Accounts are created with the real
:class:`AccountStore`.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from diameter.message.constants import SERVICE_CONTEXT_MMS_SERVICE_CHARGING

from ocs.config import Settings
from ocs.gy.application import CreditControlApplication
from ocs.gy.notifier import Notifier
from ocs.gy.peer_routes import Routes
from ocs.metrics import Metrics
from ocs.service import build_node, numbering_plan
from protocol.server import DiameterServer
from quota_engine.accounts.model import Account, Bucket
from quota_engine.catalog import Catalog, load_catalog
from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.rating import Rater
from quota_engine.charging.settings import MAX_TIMESTAMP_TOLERANCE
from quota_engine.store.accounts import AccountStore
from quota_engine.store.catalogs import demo_catalog_document
from tests.charging import messages as m
from tests.helpers import node_settings
from tests.protocol.reference_peer import ReferencePeer

REDIRECT_ADDRESS = "http://topup.operator.example/"
MMS_CONTEXT = SERVICE_CONTEXT_MMS_SERVICE_CHARGING
MMS_PRICE = 200_000
EUR = 1_000_000  # micro-units


def charging_catalog() -> Catalog:
    """The demo catalog plus ``prepaid-redirect`` (prepaid-basic redirecting at the
    end) and a catch-all MMS service (32270, 0.20 EUR per message) for requests in
    RFC 8506 single-service mode (no MSCC, no Rating-Group)."""
    document = demo_catalog_document()
    document["services"].append({"id": "mms", "context": MMS_CONTEXT, "unit": "events"})
    basic = next(p for p in document["plans"] if p["id"] == "prepaid-basic")
    basic["tariffs"].append(
        {
            "service": "mms",
            "rates": [
                {"rate": MMS_PRICE, "rate_per": 1, "first_increment": 1, "next_increment": 1}
            ],
        }
    )
    redirect = copy.deepcopy(basic)
    redirect.update(
        id="prepaid-redirect",
        name="Prepaid Redirect",
        final_unit_action="redirect",
        redirect_address=REDIRECT_ADDRESS,
    )
    document["plans"].append(redirect)
    return load_catalog(document)


class CountingApplication:
    """The credit-control application, counting the requests that reach it (a
    retransmission answered from the transport's cache does not)."""

    def __init__(self, inner: CreditControlApplication) -> None:
        self.inner = inner
        self.application_id = inner.application_id
        self.commands = inner.commands
        self.calls = 0

    async def handle(self, requests, peer):
        self.calls += len(requests)
        return await self.inner.handle(requests, peer)


@dataclass
class Ocs:
    server: DiameterServer
    engine: ChargingEngine
    notifier: Notifier
    application: CountingApplication
    accounts: AccountStore
    redis: aioredis.Redis

    async def connect(self, origin_host: str = "pgw.test.net") -> NetworkElement:
        peer = await ReferencePeer.connect("127.0.0.1", self.server.port)
        cea = await peer.open(origin_host)
        assert cea.result_code == 2001
        element = NetworkElement(peer, origin_host)
        self._peers.append(element)
        return element

    async def account(
        self,
        account_id: str,
        *identities: str,
        money: int = 10 * EUR,
        plan: str = "prepaid-basic",
        status: str = "active",
        kind: str = "prepaid",
        credit_limit: int = 0,
    ) -> str:
        account = Account(
            id=account_id,
            kind=kind,
            status=status,
            currency="EUR",
            plan=plan,
            credit_limit=credit_limit,
        )
        await self.accounts.create_account(account)
        for identity in identities:
            await self.accounts.add_subscription(account_id, identity)
        handled = self.notifier.events_handled
        await self.accounts.put_bucket(account_id, Bucket(id="main", kind="money", amount=money))
        if money > 0:
            # the bucket publishes credit_added: let the notifier handle it now, so that
            # it cannot send a RAR to a session a test opens next (the race behind a
            # rare failure of test_rar_answered_unknown_session_is_fine)
            await self.events_handled_after(handled + 1)
        return account_id

    async def events_handled_after(self, count: int, timeout: float = 5.0) -> None:
        """Wait until the notifier has handled ``count`` events in all."""
        async with asyncio.timeout(timeout):
            while self.notifier.events_handled < count:
                await asyncio.sleep(0.002)

    async def main_bucket(self, account_id: str) -> Bucket:
        bucket = await self.accounts.bucket(account_id, "main")
        assert bucket is not None
        return bucket

    def __post_init__(self) -> None:
        self._peers: list[NetworkElement] = []


class NetworkElement:
    """A P-GW, IMS AS or SMSC: python-diameter over TCP."""

    def __init__(self, peer: ReferencePeer, origin_host: str) -> None:
        self.peer = peer
        self.origin_host = origin_host

    async def ccr(self, session_id: str, request_type: int = m.INITIAL, number: int = 0, **kw):
        """Send a CCR built by :func:`tests.charging.messages.ccr`; returns the CCA."""
        return await self.request(
            m.ccr(session_id, request_type, number, origin_host=self.origin_host, **kw)
        )

    async def request(self, message):
        return m.answer_of(await self.request_bytes(message))

    async def request_bytes(self, message) -> bytes:
        await self.peer.send(message)
        return await self.peer.recv_bytes()

    async def answer_next(self, result_code: int = 2001):
        """Read the next request the OCS sends (RAR, ASR) and answer it."""
        request = await self.peer.recv()
        reply = request.to_answer()
        reply.session_id = request.session_id
        reply.result_code = result_code
        reply.origin_host = self.origin_host.encode()
        reply.origin_realm = b"test.net"
        await self.peer.send(reply)
        return request

    async def close(self) -> None:
        await self.peer.close()


@pytest.fixture
def ocs_settings() -> Settings:
    """The node's settings; a test module may override this fixture (e.g. [numbering])."""
    return node_settings()


@pytest.fixture
def ocs_catalog() -> Catalog:
    """The node's catalog; a test module may override this fixture."""
    return charging_catalog()


@pytest.fixture
async def ocs(redis_url, ocs_settings, ocs_catalog):
    client = aioredis.Redis.from_url(redis_url)
    catalog = ocs_catalog
    rater = Rater(catalog)
    # the network elements here stamp their CCRs with the scenario's time (a Wednesday
    # or a Saturday of 2025): the node trusts any Event-Timestamp, so that rating does
    # not depend on the day the tests run (tests/quota_engine/charging/test_rating_clock.py checks
    # the tolerance itself)
    engine = ChargingEngine(
        client,
        lambda: (catalog, rater),
        EngineSettings(timestamp_tolerance=MAX_TIMESTAMP_TOLERANCE),
    )
    settings = ocs_settings
    connections: set = set()
    routes = Routes(connections)
    numbering = numbering_plan(settings)
    node = build_node(
        settings,
        Metrics(),
        lambda codec: CreditControlApplication(codec, engine, routes=routes, numbering=numbering),
    )
    application = CountingApplication(node.application)
    node.application = application
    server = DiameterServer(
        node, settings.diameter_host, settings.diameter_port, connections=connections
    )
    await server.start()
    notifier = Notifier(client, engine, routes, timeout=5)
    await notifier.start()
    node_under_test = Ocs(
        server, engine, notifier, application, AccountStore(client, catalog=catalog), client
    )
    try:
        yield node_under_test
    finally:
        for element in node_under_test._peers:
            await element.close()
        await notifier.stop()
        await server.stop()
        await client.aclose()
