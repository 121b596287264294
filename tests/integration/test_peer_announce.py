"""The announcer lists the gateway's peer on an external tracker (Debian's opentracker) over HTTP
(treq) and UDP (BEP 15), and takes it off with ``stopped``."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, task

from harness import servers
from tgateway import bencode
from tgateway.peer.announce import TrackerAnnouncer, UdpAnnounceClient, http_announce_url

pytestmark = pytest.mark.integration


async def peers_listed(tracker: servers.OpenTracker, info_hash: bytes) -> list[tuple[str, int]]:
    """Announce as another (leeching) peer and return the compact peers in the answer."""
    url = http_announce_url(tracker.http_announce, info_hash, b"-XX0001-" + os.urandom(6).hex()[:12].encode(),
                            1, 0, "")
    url = url.replace("left=0", "left=100").replace("numwant=0", "numwant=50")
    r = await treq.get(url)
    body = bencode.decode_dict(await r.content())
    peers = body.get(b"peers", b"")
    return [(".".join(map(str, peers[i : i + 4])), struct.unpack(">H", peers[i + 4 : i + 6])[0])
            for i in range(0, len(peers), 6)]


@pytest.mark.parametrize("scheme", ["http", "udp"])
@pytest_twisted.ensureDeferred
async def test_announcer_lists_and_unlists_the_gateway(tmp_path: Path, scheme: str) -> None:
    ih = os.urandom(20)
    tracker = servers.start_opentracker(tmp_path / "ot", [ih.hex()])
    udp = UdpAnnounceClient(reactor)
    port_obj = reactor.listenUDP(0, udp, interface="127.0.0.1")
    our_port = 40000 + random.randrange(20000)
    url = tracker.http_announce if scheme == "http" else tracker.udp_announce
    local: list[tuple[str, bytes, str, int]] = []

    class Local:
        def add_local_peer(self, info_hash: bytes, ip: str, port: int) -> None:
            local.append(("add", info_hash, ip, port))

        def remove_local_peer(self, info_hash: bytes, ip: str, port: int) -> None:
            local.append(("remove", info_hash, ip, port))

    ann = TrackerAnnouncer(clock=reactor, peer_id=b"-TG0010-" + b"x" * 12, port=our_port, interval=3600,
                    local=Local(), local_ips=("127.0.0.1",), urls=(url,), http_get=treq.get,
                    udp=udp, resolve=reactor.resolve)
    try:
        ann.start([ih])
        assert local == [("add", ih, "127.0.0.1", our_port)]
        listed: list[Any] = []
        for _ in range(100):
            listed = await peers_listed(tracker, ih)
            if ("127.0.0.1", our_port) in listed:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        assert ("127.0.0.1", our_port) in listed, (listed, ann.results)
        assert ann.results[url] == "ok"
        await ann.stop()
        assert local[-1] == ("remove", ih, "127.0.0.1", our_port)
        listed = await peers_listed(tracker, ih)
        assert ("127.0.0.1", our_port) not in listed
    finally:
        await defer.maybeDeferred(port_obj.stopListening)
        tracker.stop()
