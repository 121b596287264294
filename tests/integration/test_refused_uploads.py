"""A refused upload never becomes visible and never produces a "stored" event (issue 15).

The whole plugin (``unified``: gateway API, Blossom, tracker, DHT, peer, Nostr) on loopback with
a real nostr-relay 1.14. Uploads are refused, each at the last moment, inside the store's commit:

- over quota: two uploads that each fit pass every early check; the second to commit is refused
  in the transaction that would add its owner's reference;
- a NIP-98 ``payload`` tag naming other bytes, for a raw ``PUT`` and for a multipart form (the
  body is only known once it is in);
- a Blossom ``X-SHA-256`` (and token ``x`` tag) naming other bytes;
- a check added to the one upload handler (what a block list will be) that raises, for the
  gateway API and for Blossom alike.

Then a good upload is accepted, as the control that the observers see what there is to see.
For every refused file: no store subscriber was called (the DHT, the peer and the NIP-35
announcer are subscribers), no NIP-35 event reached the relay (read back with nostr-tools), the
DHT never queued an announce of its info-hash, the tracker never listed the gateway's peer for
it (and a real announce to ``/announce`` finds none), the peer does not seed it, and nothing of
it is stored. (Refusing *after* the file became visible, then removing it, would pass the last
three: the test fails on the first three.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from harness.gateway import serving_config
from harness.ports import free_tcp_port, free_udp_port
from harness.procs import run_node_json_deferred
from harness.servers import start_nostr_relay
from tests.blossom.tokens import header as blossom_header
from tests.integration.test_nostr_gateway import Gateway, call
from tests.web.test_api import multipart
from tests.web.test_upload_quota import HeldBody, concurrently, http
from tgateway import bencode
from tgateway.errors import Forbidden
from tgateway.nostr.event import EventTemplate, sign
from tgateway.storage.ingest import IngestResult

pytestmark = pytest.mark.integration

ALICE = "a1" * 32
NIP98_KEY = b"\x42" * 32
SIZE = 60_000
QUOTA = 100_000  # one 60 000-byte file fits, two do not
CS = 16384  # storage.chunk_size of the test config: the piece length


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def info_hash(name: str, data: bytes) -> str:
    """The v1 info-hash the store would give ``data`` stored as ``name``."""
    pieces = b"".join(hashlib.sha1(data[i:i + CS]).digest() for i in range(0, len(data), CS))
    info = {b"length": len(data), b"name": name.encode(), b"piece length": CS, b"pieces": pieces}
    return hashlib.sha1(bencode.encode(info)).hexdigest()


def nip98(url: str, method: str, payload: bytes) -> str:
    tags = (("u", url), ("method", method), ("payload", sha(payload)))
    event = sign(EventTemplate(kind=27235, created_at=int(time.time()), tags=tags), NIP98_KEY)
    return "Nostr " + base64.b64encode(json.dumps(event.to_json()).encode()).decode()


class RefusedUploadTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tg-refused-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    async def test_refused_uploads_fire_no_stored_event(self) -> None:
        relay = start_nostr_relay(os.path.join(self.dir, "relay"))
        self.addCleanup(relay.stop)
        config = serving_config(
            os.path.join(self.dir, "gw"),
            nostr={"relays": [relay.url]},
            tracker={"enabled": True, "udp_port": 0, "host": "127.0.0.1"},
            dht={"enabled": True, "port": free_udp_port(), "host": "127.0.0.1",
                 "bootstrap_nodes": []},
            peer={"port": free_tcp_port(), "host": "127.0.0.1"},
            admin={"default_user_storage_limit": QUOTA},
        )
        gw = Gateway(config)
        self.addCleanup(gw.stop)
        g = gw.gateway
        port = gw.service.getServiceNamed("blossom-http")._waitingForPort.result.getHost().port
        blossom = f"http://127.0.0.1:{port}"
        stored: list[Any] = []
        g.store.subscribe_stored(stored.append)
        listed: list[bytes] = []  # info-hashes the tracker was ever told the gateway seeds
        tracker, dht = g.components.tracker, g.components.dht
        add_local_peer, dht_announce = tracker.add_local_peer, dht.announce

        def record_listed(ih: bytes, ip: str, port: int) -> None:
            listed.append(ih)
            add_local_peer(ih, ip, port)

        dht_queued: list[bytes] = []

        def record_dht(ih: bytes) -> None:
            dht_queued.append(ih)
            dht_announce(ih)

        tracker.add_local_peer = record_listed  # the peer's announcer calls it
        dht.announce = record_dht  # the DHT's stored-event subscriber calls it
        refused: dict[str, tuple[str, str]] = {}  # case -> (sha256, info-hash)

        # 1. over quota, found at commit: both uploads pass the early checks
        token, _ = await g.components.gateway.users.sessions.create(ALICE, "test", time.time())
        files = [os.urandom(SIZE), os.urandom(SIZE)]

        def send(body: HeldBody) -> Deferred[Any]:
            return http.put(gw.url("/api/upload"), data=body, headers={
                "Authorization": f"Bearer {token}", "X-Filename": "mine.bin",
                "Content-Type": "application/octet-stream"})

        results = await concurrently(send, files)
        self.assertEqual(sorted(code for code, _ in results), [201, 413], results)
        [(_, won)] = [(c, b) for c, b in results if c == 201]
        [lost] = [f for f in files if sha(f) != won["sha256"]]
        self.assertIn(("quota_exceeded"), [b["error"] for c, b in results if c == 413])
        refused["quota"] = (sha(lost), info_hash("mine.bin", lost))

        # 2. a NIP-98 payload tag naming other bytes: a raw PUT, then a form
        data = os.urandom(20_000)
        code, body = await call("PUT", gw.url("/api/upload"), data=data, headers={
            "Authorization": nip98(gw.url("/api/upload"), "PUT", b"other bytes"),
            "X-Filename": "nip98.bin", "Content-Type": "application/octet-stream"})
        self.assertEqual((code, body["error"]), (401, "invalid_nip98"), body)
        refused["nip98 raw"] = (sha(data), info_hash("nip98.bin", data))

        data = os.urandom(20_000)
        form, ctype = multipart({"title": "t"}, "form.bin", data)
        code, body = await call("POST", gw.url("/api/upload"), data=form, headers={
            "Authorization": nip98(gw.url("/api/upload"), "POST", b"another form"),
            "Content-Type": ctype})
        self.assertEqual((code, body["error"]), (401, "invalid_nip98"), body)
        refused["nip98 form"] = (sha(data), info_hash("form.bin", data))

        # 3. a Blossom X-SHA-256 (and the token's x tag) naming other bytes
        data, claimed = os.urandom(20_000), sha(b"what the client claimed")
        code, body = await call("PUT", blossom + "/upload", data=data, headers={
            "Authorization": blossom_header("upload", hashes=(claimed,)), "X-SHA-256": claimed,
            "X-Filename": "blob.bin"})
        self.assertEqual((code, body["error"]), (409, "hash_mismatch"), body)
        refused["blossom x-sha-256"] = (sha(data), info_hash("blob.bin", data))

        # 4. a check added to the upload handler raises, for either way in
        blocked = {os.urandom(20_000), os.urandom(20_000)}
        blocked_shas = {sha(b) for b in blocked}

        def block_list(result: IngestResult) -> None:
            if result.sha256 in blocked_shas:
                raise Forbidden("this file is blocked", code="blocked")

        g.uploads.checks.append(block_list)
        via_api, via_blossom = blocked
        code, body = await call("PUT", gw.url("/api/upload"), data=via_api,
                                headers={"X-Filename": "blocked.bin"})
        self.assertEqual((code, body["error"]), (403, "blocked"), body)
        refused["check, API"] = (sha(via_api), info_hash("blocked.bin", via_api))
        code, body = await call("PUT", blossom + "/upload", data=via_blossom, headers={
            "Authorization": blossom_header("upload", hashes=(sha(via_blossom),)),
            "X-Filename": "blocked.bin"})
        self.assertEqual((code, body["error"]), (403, "blocked"), body)
        refused["check, Blossom"] = (sha(via_blossom), info_hash("blocked.bin", via_blossom))

        # the control: a good upload is stored, announced and listed
        good = os.urandom(20_000)
        code, accepted = await call("PUT", gw.url("/api/upload"), data=good,
                                    headers={"X-Filename": "good.bin"})
        self.assertEqual(code, 201, accepted)
        self.assertEqual(accepted["info_hash"], info_hash("good.bin", good))  # as computed here
        kept = {won["sha256"]: won["info_hash"], accepted["sha256"]: accepted["info_hash"]}
        for digest in kept:
            await self.wait_announced(gw, digest, relay.url)
        await deferLater(reactor, 0.5, lambda: None)  # anything else queued has gone out too

        # no store subscriber heard of a refused file; nothing of it is stored
        self.assertEqual({e.file.sha256 for e in stored}, set(kept))
        for case, (digest, ih) in refused.items():
            self.assertIsNone(await g.store.get(digest), case)
            self.assertFalse(g.store.has_info_hash(bytes.fromhex(ih)), case)
        self.assertEqual((await g.store.stats())["files"], len(kept))

        # no NIP-35 event for a refused file reached the relay
        answer = await run_node_json_deferred(
            reactor, "nostr_relay_read.mjs", relay.url,
            json.dumps({"kinds": [2003], "authors": [g.components.nostr.pubkey]}), timeout=60)
        announced = {t[1] for e in answer["events"] for t in e["tags"] if t[0] == "x"}
        self.assertEqual(announced, set(kept.values()))
        self.assertEqual(answer["verified"], [True] * len(kept))

        # the DHT announced and the tracker listed the gateway's peer for the kept files only;
        # the peer seeds only them
        kept_ih = {bytes.fromhex(h) for h in kept.values()}
        self.assertEqual(set(dht_queued), kept_ih)
        self.assertEqual(set(listed), kept_ih)
        peer = g.components.peer
        ours = b"\x7f\x00\x00\x01" + peer.port.to_bytes(2, "big")
        self.assertEqual(set(tracker.store.local), kept_ih)
        self.assertEqual(set(peer.announcer.torrents), kept_ih)
        for ih in kept.values():
            self.assertIn(ours, await self.announce(gw, ih))
        for case, (_, ih) in refused.items():
            self.assertNotIn(ours, await self.announce(gw, ih), case)

    async def wait_announced(self, gw: Gateway, digest: str, relay_url: str) -> None:
        deadline = time.monotonic() + 40
        while True:
            code, body = await call("GET", gw.url(f"/api/files/{digest}/announcements"))
            got = [(r["relay"], r["status"]) for r in body["announcements"]]
            if got == [(relay_url, "accepted")]:
                return
            if time.monotonic() > deadline:
                self.fail(f"announcements of {digest}: {got}")
            await deferLater(reactor, 0.2, lambda: None)

    async def announce(self, gw: Gateway, ih: str) -> bytes:
        """The compact peer list the tracker answers an announce for ``ih`` with."""
        query = (f"info_hash={quote_from_bytes(bytes.fromhex(ih))}&peer_id=-TG0001-{'x' * 12}"
                 f"&port=51413&uploaded=0&downloaded=0&left=100&compact=1&numwant=50")
        r = await http.get(gw.url(f"/announce?{query}"))
        answer = bencode.decode(await r.content())
        self.assertNotIn(b"failure reason", answer, answer)
        return bytes(answer.get(b"peers", b""))
