"""A file deleted by an admin, seen from every face of a real gateway, with real clients.

One gateway (``makeService`` on loopback: HTTP API, tracker on HTTP, UDP and WebSocket, DHT node
with a 2 s re-announce interval, BitTorrent peer, Nostr to a real nostr-relay) stores a file and
publishes it; then an admin deletes it through ``DELETE /api/admin/files/<sha256>``:

- the ``bittorrent-tracker`` node client announcing its info-hash gets a failure reason over
  HTTP, UDP and WebSocket (it got peers before);
- a ``bittorrent-dht`` node (peers expire after a few seconds there, as announces do on the real
  DHT) found the gateway for it, from its own store and through a lookup; after the re-announce
  interval it no longer does (the gateway stopped announcing, and its own node answers no
  peers for it);
- the peer closes the connection it had open for the torrent, and refuses a new handshake;
- nostr-tools reads, from the relay, the gateway's kind 5 event naming its NIP-35 event
  (``e`` tag) and kind (``k`` 2003), and verifies its signature.

The uploads of the same bytes (gateway API, Blossom, mirror) are in ``test_admin_api.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from harness import ports, procs, servers
from harness.gateway import RunningGateway, serving_config
from tests.integration.test_admin_api import ADMIN, ADMIN_PUB, call
from tgateway.nostr.event import EventTemplate, sign

pytestmark = pytest.mark.integration

MAX_AGE_MS = 5000  # the bittorrent-dht node keeps an announced peer 3.3 to 6.7 s
FAILURE = "info_hash is not allowed on this tracker"


def sleep(seconds: float) -> Any:
    return deferLater(reactor, seconds, lambda: None)


def handshake(info_hash: bytes) -> bytes:
    return b"\x13BitTorrent protocol" + bytes(8) + info_hash + b"-XX0001-" + b"7" * 12


def open_torrent(port: int, info_hash: bytes) -> tuple[socket.socket, bytes]:
    """(thread) Connect to the peer and handshake; the socket and the first 68 bytes back (b""
    when the peer closed the connection instead)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(handshake(info_hash))
    got = b""
    while len(got) < 68:
        chunk = s.recv(68 - len(got))
        if not chunk:
            break
        got += chunk
    return s, got


def closed_within(s: socket.socket, seconds: float) -> bool:
    """(thread) Whether the peer closes ``s`` within ``seconds`` (whatever it sends before)."""
    s.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except TimeoutError:
        return False
    except OSError:
        return True  # reset
    return False


class BlockedEverywhereTests(TestCase):
    timeout = 240

    async def test_a_deleted_file_is_refused_by_every_face(self) -> None:
        directory = tempfile.mkdtemp(prefix="tg-blocked-")
        self.addCleanup(shutil.rmtree, directory, True)
        relay = servers.start_nostr_relay(os.path.join(directory, "relay"))
        self.addCleanup(relay.stop)
        udp_port = ports.free_udp_port()
        config = serving_config(
            os.path.join(directory, "gw"),
            admin={"pubkeys": [ADMIN_PUB]},
            tracker={"enabled": True, "host": "127.0.0.1", "udp_port": udp_port},
            dht={"enabled": True, "host": "127.0.0.1", "port": 0, "announce_interval": "2s",
                 "bootstrap_nodes": []},
            nostr={"relays": [relay.url]},
        )
        gw = RunningGateway(config)
        self.addCleanup(gw.stop)
        nostr = gw.gateway.components.nostr
        dht = gw.gateway.components.dht
        peer_port = gw.gateway.components.peer.port

        code, f, _ = await call("PUT", gw.url("/api/upload"), data=os.urandom(40_000),
                                headers={"X-Filename": "clip.bin"})
        self.assertEqual(code, 201, f)
        sha, ih = f["sha256"], f["info_hash"]
        announcement = await self.accepted(nostr, sha)

        # before: the tracker answers on every transport, the DHT node finds the gateway,
        # the peer takes a handshake for the torrent
        urls = {"http": gw.url("/announce"), "udp": f"udp://127.0.0.1:{udp_port}/announce",
                "ws": f"ws://127.0.0.1:{gw.port}/announce"}
        for transport, url in urls.items():
            answer = await self.tracker(url, ih)
            self.assertEqual((answer["warnings"], answer["errors"]), ([], []), transport)
            self.assertEqual(len(answer["updates"]), 1, (transport, answer))
        wanted = f"127.0.0.1:{peer_port}"
        watcher = procs.ClientProcess.node(
            "dht_watch.mjs", str(dht.ports[0]), ih, wanted, str(MAX_AGE_MS))
        self.addCleanup(watcher.stop)
        await self.until(lambda: any(line.get("found") and wanted in line.get("local", [])
                                     for line in self.lines(watcher)),
                         30, "the bittorrent-dht node never got the gateway's announce",
                         watcher)
        conn, first = await deferToThread(open_torrent, peer_port, bytes.fromhex(ih))
        self.addCleanup(conn.close)
        self.assertEqual(first[28:48], bytes.fromhex(ih), first)

        # the admin deletes it
        admin = await self.admin_session(gw)
        code, done, _ = await call("DELETE", gw.url(f"/api/admin/files/{sha}"), admin,
                                   {"reason": "test"})
        self.assertEqual((code, done["file_deleted"]), (200, True), done)
        deleted_at = len(self.lines(watcher))

        # the peer: the open connection is closed, a new handshake refused
        self.assertTrue(await deferToThread(closed_within, conn, 10.0))
        again, got = await deferToThread(open_torrent, peer_port, bytes.fromhex(ih))
        again.close()
        self.assertEqual(got, b"")

        # the tracker: a failure reason on every transport
        for transport, url in urls.items():
            answer = await self.tracker(url, ih)
            self.assertEqual((answer["warnings"], answer["updates"]), ([FAILURE], []),
                             (transport, answer))

        # the DHT: after the re-announce interval (and the node's peer lifetime) the gateway is
        # no longer found, neither in the node's own store nor through a lookup
        def gone_for_good() -> bool:
            after = self.lines(watcher)[deleted_at:]
            quiet = [i for i, line in enumerate(after)
                     if not line.get("found") and wanted not in line.get("local", [])]
            return bool(quiet) and all(not line.get("found") for line in after[quiet[0]:]) \
                and after[-1]["at"] - after[quiet[0]]["at"] >= 3000
        await self.until(gone_for_good, 30, "the DHT node still finds the gateway", watcher)
        after = self.lines(watcher)[deleted_at:]
        first_quiet = next(line for line in after if not line.get("found"))
        self.assertLess(first_quiet["at"] - after[0]["at"], 2 * MAX_AGE_MS + 4000, after)

        # Nostr: the gateway's kind 5 event, read from the relay with nostr-tools
        answer = await procs.read_relay_until_found(
            reactor, relay.url, {"kinds": [5], "authors": [nostr.pubkey]}, within=30)
        self.assertEqual(answer["verified"], [True], answer)
        [deletion] = answer["events"]
        tags = [tuple(t) for t in deletion["tags"]]
        self.assertIn(("e", announcement), tags)
        self.assertIn(("k", "2003"), tags)

    # helpers -----------------------------------------------------------------------------

    async def accepted(self, nostr: Any, sha: str) -> str:
        """The id of the file's NIP-35 event, once the relay accepted it."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = await nostr.announcer.announcements(sha)
            if rows and rows[0]["status"] == "accepted":
                return str(rows[0]["event_id"])
            await sleep(0.1)
        self.fail(f"the NIP-35 event of {sha} was not accepted: {rows}")

    async def tracker(self, url: str, ih: str) -> dict[str, Any]:
        result = await procs.run_node_deferred(reactor, "tracker_announce_once.mjs", url,
                                                     ih, timeout=30)
        return dict(procs.last_json_line(result))

    async def admin_session(self, gw: RunningGateway) -> str:
        code, c, _ = await call("GET", gw.url("/api/auth/challenge"))
        event = sign(EventTemplate(kind=22242, created_at=int(time.time()),
                                   tags=(("relay", gw.base), ("challenge", c["challenge"]))),
                     bytes.fromhex(ADMIN))
        code, body, _ = await call("POST", gw.url("/api/auth/login"),
                                   body={"auth_type": "nip07", "auth_event": event.to_json()})
        self.assertEqual(code, 200, body)
        return str(body["token"])

    @staticmethod
    def lines(proc: procs.ClientProcess) -> list[dict[str, Any]]:
        out = []
        for line in proc.stdout_lines:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and "n" in value:
                out.append(value)
        return out

    async def until(self, predicate: Any, within: float, what: str,
                    proc: procs.ClientProcess) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if predicate():
                return
            await sleep(0.2)
        self.fail(f"{what}\n{proc.describe()}")
