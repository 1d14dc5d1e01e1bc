"""Client side: connect to a Diameter server, exchange capabilities, send requests.

Used by the tests and the load generator, and by anything that needs to act as a
network element (P-GW, IMS AS, SMSC) towards the OCS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .base import PeerPolicy
from .connection import Application, Node, Observer, PeerConnection, Role, Timers
from .dictionary import constants as c
from .messages import Codec, LocalIdentity

CREDIT_CONTROL = c.APP_DIAMETER_CREDIT_CONTROL_APPLICATION


def client_node(
    origin_host: str,
    origin_realm: str,
    application_ids: Iterable[int] = (CREDIT_CONTROL,),
    timers: Timers | None = None,
    application: Application | None = None,
    observer: Observer | None = None,
) -> Node:
    """A node for initiating connections, e.g. a simulated P-GW."""
    identity = LocalIdentity(origin_host, origin_realm, product_name="ocs-client")
    return Node(
        Codec(identity),
        PeerPolicy.build(application_ids),
        timers or Timers(),
        application=application,
        observer=observer,
    )


async def connect(
    node: Node,
    host: str,
    port: int,
    timeout: float = 5.0,
    *,
    connection_type: type[PeerConnection] = PeerConnection,
) -> PeerConnection:
    """Open a TCP connection, send CER and return once the peer is OPEN.

    ``connection_type`` is the PeerConnection (sub)class to run on the socket; the
    load generator passes one that coalesces writes. Raises ``ConnectionRefusedError``
    when the CEA carries an error Result-Code; on any failure the socket is aborted.
    """
    loop = asyncio.get_running_loop()
    _, connection = await asyncio.wait_for(
        loop.create_connection(lambda: connection_type(node, Role.INITIATOR), host, port),
        timeout,
    )
    try:
        await asyncio.wait_for(asyncio.shield(connection.opened), timeout)
    except BaseException:
        connection.abort()
        raise
    return connection
