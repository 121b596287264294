"""A flood of silent connections on the peer port cannot keep real peers out.

The gateway runs as ``twistd tgateway`` with the default peer limits (``max_connections`` 200, 8
per address). 200 connections that never send a byte come from 25 loopback addresses
(127.0.0.2 to 127.0.0.26, 8 each), and every one the gateway closes is opened again at once, so
the pressure lasts. Before, they filled ``max_connections`` for the 30 s handshake timeout and a
real peer's connection was closed unanswered. Now unidentified connections have their own budget
(a quarter of ``max_connections``) and a 10 s deadline, and the flood evicts its own connections:
our own wire client (127.0.0.1) completes a handshake and gets a block, and libtorrent downloads
the whole file, while the flood goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import struct
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness import ports, procs
from harness.twistd import GatewayProcess, gateway_config
from tgateway.peer import wire

pytestmark = pytest.mark.integration

LT_CLIENT = Path(__file__).resolve().parent.parent / "peer" / "lt_client.py"
SIZE = 3 * 1000 * 1000


class SilentFlood:
    """8 silent connections from each of 25 loopback addresses, reopened when closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks: dict[socket.socket, str] = {}
        self.closed_by_gateway = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, host: str) -> None:
        s = socket.socket()
        s.bind((host, 0))
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", self.port))  # one at a time: the listen backlog is 50
        except OSError:
            s.close()
            return
        s.setblocking(False)
        self.socks[s] = host

    def start(self) -> None:
        for a in range(2, 27):
            for _ in range(8):
                self._open(f"127.0.0.{a}")
        assert len(self.socks) == 200
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select(list(self.socks), [], [], 0.05)
            for s in readable:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:  # the gateway closed it: open another, silent again
                    host = self.socks.pop(s)
                    s.close()
                    self.closed_by_gateway += 1
                    if not self._stop.is_set():
                        self._open(host)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self.socks:
            s.close()


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed by the gateway after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def _fetch_block(port: int, info_hash: bytes) -> bytes:
    """Our own wire client: handshake, interested, the first 16 KiB block of piece 0."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(wire.encode_handshake(wire.reserved_bits(), info_hash, b"-TT0001-" + os.urandom(6).hex().encode()[:12]))
        hs = wire.decode_handshake(_recv_exact(s, 68))
        assert hs.info_hash == info_hash
        s.sendall(struct.pack(">IB", 1, wire.INTERESTED))
        requested = False
        while True:
            (n,) = struct.unpack(">I", _recv_exact(s, 4))
            body = _recv_exact(s, n)
            if not body:
                continue
            if body[0] == wire.UNCHOKE and not requested:
                s.sendall(struct.pack(">IBIII", 13, wire.REQUEST, 0, 0, 16384))
                requested = True
            elif body[0] == wire.PIECE:
                index, begin = struct.unpack(">II", body[1:9])
                assert (index, begin) == (0, 0)
                return body[9:]


def _health(gw: GatewayProcess) -> dict[str, Any]:
    with urllib.request.urlopen(gw.url("/api/health"), timeout=10) as r:
        return json.load(r)  # type: ignore[no-any-return]


def test_silent_flood_does_not_keep_real_peers_out(tmp_path: Path) -> None:
    peer_port = ports.free_tcp_port()
    cfg = gateway_config(tmp_path / "data", peer={"port": peer_port, "host": "127.0.0.1"},
                         nostr={"auto_publish": False})
    with GatewayProcess(cfg, tmp_path / "gw") as gw:
        content = os.urandom(SIZE)
        req = urllib.request.Request(gw.url("/api/upload"), data=content, method="PUT",
                                     headers={"X-Filename": "flooded.bin"})
        with urllib.request.urlopen(req, timeout=60) as r:
            info = json.load(r)
        with urllib.request.urlopen(gw.url(f"/api/torrent/{info['sha256']}?webseed=0")) as r:
            torrent = tmp_path / "flooded.torrent"
            torrent.write_bytes(r.read())
        info_hash = bytes.fromhex(info["info_hash"])

        flood = SilentFlood(peer_port)
        flood.start()
        try:
            time.sleep(1.0)  # every silent connection is in (or was evicted and came back)
            block = _fetch_block(peer_port, info_hash)
            assert block == content[:16384]
            out = tmp_path / "lt"
            out.mkdir()
            result = procs.run_libtorrent(
                LT_CLIENT, "leech", str(torrent), str(out), f"127.0.0.1:{peer_port}", "60",
                timeout=90, env={"LT_ENCRYPTION": "off"})
            report = result.json()
            assert report["ok"], report
            got = (out / info["name"]).read_bytes()
            assert hashlib.sha256(got).hexdigest() == info["sha256"]
            peer = _health(gw)["peer"]
            assert 40 <= peer["unidentified"] <= 50, peer  # the flood goes on, within its budget
            assert peer["evicted"] >= 150, peer
        finally:
            flood.stop()
