"""One DHT node per address family (BEP 32): its sans-IO core, its UDP adapter and its port.

:func:`open_family` builds the node for one of ``dht.host`` / ``dht.host6`` (IPv6 when the host
has a colon) with its saved id and external address and the saved nodes of its family, attaches
the UDP adapter (:class:`~tgateway.dht.protocol.DhtProtocol`) and binds the port: an IPv6 socket
that does not also take IPv4, so each family keeps a routing table of its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tgateway.config import DhtConfig
from tgateway.dht.node import DhtNode
from tgateway.dht.protocol import DhtProtocol, V6OnlyPort

__all__ = ["Family", "open_family"]

MAX_DATAGRAM = 8192


class Family:
    """One bound node (IPv4 or IPv6)."""

    def __init__(self, node: DhtNode, proto: DhtProtocol, host: str):
        self.node = node
        self.proto = proto
        self.host = host
        self.port: Any = None

    @property
    def bound_port(self) -> int | None:
        return self.port.getHost().port if self.port is not None else None

    def local_ip(self, announce_ips: Sequence[str]) -> str | None:
        """The gateway's address in this family: the peer's announced address, else the DHT's
        own host when specific, else None (the node falls back to its voted external address)."""
        for ip in announce_ips:
            if (":" in ip) == self.node.ipv6:
                return ip
        if self.host in ("", "0.0.0.0", "::"):
            return None
        return self.host


def open_family(
    config: DhtConfig,
    host: str,
    node_id: bytes,
    external_ip: str | None,
    saved: Iterable[tuple[bytes, str, int]],
    *,
    now: float,
    clock: Any,
    reactor: Any,
    rng: random.Random,
    known_info_hashes: Callable[[], Iterable[bytes]],
    refused: Callable[[bytes], bool],
    on_id_change: Callable[[bytes], None],
) -> Family:
    """The node for ``host``, listening on ``config.port`` (``saved``: every saved node; those
    of the other family are left out). Raises what binding the port raises."""
    c = config
    ipv6 = ":" in host
    proto = DhtProtocol(clock)
    node = DhtNode(
        node_id,
        proto,
        rng,
        now,
        ipv6=ipv6,
        max_torrents=c.max_torrents,
        max_peers_per_torrent=c.max_peers_per_torrent,
        query_rate=c.query_rate_limit,
        query_burst=c.query_burst,
        max_outstanding=c.max_outstanding_queries,
        secret_rng=random.SystemRandom(),
    )
    node.known_info_hashes = known_info_hashes
    node.refused = refused
    node.on_id_change = on_id_change
    node.external_ip = external_ip
    proto.node = node
    nodes = [n for n in saved if (":" in n[1]) == ipv6]
    node.table.load(nodes, now)
    fam = Family(node, proto, host)
    if ipv6:
        port = V6OnlyPort(c.port, proto, host, MAX_DATAGRAM, reactor)  # type: ignore[no-untyped-call]
        port.startListening()  # type: ignore[no-untyped-call]
        fam.port = port
    else:
        fam.port = reactor.listenUDP(c.port, proto, interface=host, maxPacketSize=MAX_DATAGRAM)
    return fam
