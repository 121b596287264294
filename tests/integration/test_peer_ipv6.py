"""The peer service listens on IPv6 when peer.host is an IPv6 address and tells an IPv6 peer its
address (BEP 10 ``yourip``, 16 bytes); the built-in tracker gets the IPv6 address."""

from __future__ import annotations

import random
import socket
import struct
from typing import Any

import pytest
from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import SkipTest, TestCase

from tests.peer.test_core import FakeTorrent
from tgateway import bencode
from tgateway.config import PeerConfig
from tgateway.peer import wire
from tgateway.peer.service import build_peer

pytestmark = pytest.mark.integration


class FakeStore:
    def __init__(self, t: FakeTorrent, reader: Any) -> None:
        self.t = t
        self.reader = reader

    def has_info_hash(self, ih: bytes) -> bool:
        return ih == self.t.info_hash_bytes

    async def get_by_info_hash(self, h: str) -> Any:
        return self.t if h == self.t.info_hash_bytes.hex() else None

    def info_hashes(self) -> frozenset[bytes]:
        return frozenset({self.t.info_hash_bytes})

    announced_info_hashes = info_hashes


class Local:
    def __init__(self) -> None:
        self.peers: list[tuple[bytes, str, int]] = []

    def add_local_peer(self, ih: bytes, ip: str, port: int) -> None:
        self.peers.append((ih, ip, port))

    def remove_local_peer(self, ih: bytes, ip: str, port: int) -> None:
        self.peers.remove((ih, ip, port))


def talk(port: int, t: FakeTorrent) -> dict[bytes, Any]:
    with socket.create_connection(("::1", port), timeout=5) as s:
        s.sendall(wire.encode_handshake(wire.reserved_bits(), t.info_hash_bytes, b"-XX0001-" + b"0" * 12))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) >= 72:
                (n,) = struct.unpack(">I", data[68:72])
                if len(data) >= 72 + n:
                    break
    assert data[:20] == wire.PROTOCOL
    msg = wire.decode_message(data[72 : 72 + n])
    assert isinstance(msg, wire.Extended) and msg.ext_id == 0
    return bencode.decode(msg.payload)  # type: ignore[no-any-return]


class PeerIpv6Tests(TestCase):
    timeout = 60

    async def test_ipv6_listener_and_yourip(self) -> None:
        if not socket.has_ipv6:
            raise SkipTest("no IPv6 on this machine")
        t = FakeTorrent()
        local = Local()
        svc = build_peer(PeerConfig(port=0, host="::1"), store=FakeStore(t, None), reactor=reactor,
                         rng=random.Random(1), tracker=local,
                         gateway_base_url="http://127.0.0.1:1")
        svc.startService()
        try:
            for _ in range(50):
                if svc.port:
                    break
                await threads.deferToThread(lambda: None)
            ext = await threads.deferToThread(talk, svc.port, t)
            self.assertEqual(ext[b"yourip"], socket.inet_pton(socket.AF_INET6, "::1"))
            self.assertEqual(ext[b"metadata_size"], len(t.info))
            self.assertEqual(ext[b"p"], svc.port)
            self.assertEqual(local.peers, [(t.info_hash_bytes, "::1", svc.port)])
        finally:
            await defer.maybeDeferred(svc.stopService)
        self.assertEqual(local.peers, [])
