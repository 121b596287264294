"""The announcer lists the gateway's peer on an external tracker (Debian's opentracker) over HTTP
(treq) and UDP (BEP 15), and takes it off with ``stopped``."""

from __future__ import annotations

import os
import random
import struct
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import treq
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from harness import servers
from harness.gateway import case_data_dir
from tgateway import bencode
from tgateway.peer.announce import TrackerAnnouncer, UdpAnnounceClient, http_announce_url

pytestmark = pytest.mark.integration

POOL = HTTPConnectionPool(reactor, persistent=False)  # no idle connection outlives a test
http_get = partial(treq.get, pool=POOL)


async def peers_listed(tracker: servers.OpenTracker, info_hash: bytes) -> list[tuple[str, int]]:
    """Announce as another (leeching) peer and return the compact peers in the answer."""
    url = http_announce_url(tracker.http_announce, info_hash, b"-XX0001-" + os.urandom(6).hex()[:12].encode(),
                            1, 0, "")
    url = url.replace("left=0", "left=100").replace("numwant=0", "numwant=50")
    r = await http_get(url)
    body = bencode.decode_dict(await r.content())
    peers = body.get(b"peers", b"")
    return [(".".join(map(str, peers[i : i + 4])), struct.unpack(">H", peers[i + 4 : i + 6])[0])
            for i in range(0, len(peers), 6)]


class AnnouncerTests(TestCase):
    timeout = 60

    async def test_announcer_lists_and_unlists_the_gateway_over_http(self) -> None:
        await self.lists_and_unlists("http")

    async def test_announcer_lists_and_unlists_the_gateway_over_udp(self) -> None:
        await self.lists_and_unlists("udp")

    async def lists_and_unlists(self, scheme: str) -> None:
        tmp = Path(case_data_dir(self))
        ih = os.urandom(20)
        tracker = servers.start_opentracker(tmp / "ot", [ih.hex()])
        self.addCleanup(tracker.stop)
        udp = UdpAnnounceClient(reactor)
        port_obj = reactor.listenUDP(0, udp, interface="127.0.0.1")
        self.addCleanup(port_obj.stopListening)
        our_port = 40000 + random.randrange(20000)
        url = tracker.http_announce if scheme == "http" else tracker.udp_announce
        local: list[tuple[str, bytes, str, int]] = []

        class Local:
            def add_local_peer(self, info_hash: bytes, ip: str, port: int) -> None:
                local.append(("add", info_hash, ip, port))

            def remove_local_peer(self, info_hash: bytes, ip: str, port: int) -> None:
                local.append(("remove", info_hash, ip, port))

        ann = TrackerAnnouncer(clock=reactor, peer_id=b"-TG0010-" + b"x" * 12, port=our_port,
                               interval=3600, local=Local(), local_ips=("127.0.0.1",),
                               urls=(url,), http_get=http_get, udp=udp, resolve=reactor.resolve)
        ann.start([ih])
        self.addCleanup(ann.stop)  # (a no-op once the test has stopped it)
        self.assertEqual(local, [("add", ih, "127.0.0.1", our_port)])
        listed: list[Any] = []
        for _ in range(100):
            listed = await peers_listed(tracker, ih)
            if ("127.0.0.1", our_port) in listed:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertIn(("127.0.0.1", our_port), listed, (listed, ann.results))
        self.assertEqual(ann.results[url], "ok")
        await ann.stop()
        self.assertEqual(local[-1], ("remove", ih, "127.0.0.1", our_port))
        listed = await peers_listed(tracker, ih)
        self.assertNotIn(("127.0.0.1", our_port), listed)
