"""Where to send a server-initiated request (RAR, ASR) for a network element.

A session remembers the Origin-Host of the network element that opened it (the
P-GW, the IMS AS). That element may be connected to this node directly, or sit behind
a Diameter routing agent whose own Origin-Host is what its CER announced. The table
here learns, from every CCR this node answers, on which connection requests from an
Origin-Host (and its Origin-Realm) arrive, so a RAR reaches the element through the
same path, addressed to it (Destination-Host/Realm) rather than to the agent.

It is a routing cache of this node only: sessions move between nodes, and a node
that never saw a request from an element falls back to a direct connection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.connection import PeerConnection


@dataclass(frozen=True, slots=True)
class Route:
    connection: PeerConnection
    destination_host: str
    destination_realm: str


class Routes:
    """Origin-Host -> (connection, Origin-Realm), most recently used, bounded."""

    def __init__(self, connections: Iterable[PeerConnection], max_entries: int = 65536) -> None:
        self._connections = connections
        self._learned: OrderedDict[str, tuple[PeerConnection, str]] = OrderedDict()
        self._max_entries = max_entries

    def learn(self, origin_host: str, origin_realm: str, connection: PeerConnection) -> None:
        """A request from ``origin_host`` arrived on ``connection``."""
        self._learned[origin_host] = (connection, origin_realm)
        self._learned.move_to_end(origin_host)
        if len(self._learned) > self._max_entries:
            self._learned.popitem(last=False)

    def route(self, origin_host: str) -> Route | None:
        """An open path to ``origin_host``: the learned one, else a direct connection."""
        learned = self._learned.get(origin_host)
        if learned is not None and learned[0].is_open:
            connection, realm = learned
            return Route(connection, origin_host, realm)
        for connection in list(self._connections):
            peer = connection.peer
            if connection.is_open and peer is not None and peer.origin_host == origin_host:
                return Route(connection, peer.origin_host, peer.origin_realm)
        return None
