"""The relay pool on the real reactor, over loopback WebSockets.

Against the scriptable fake relay (served by autobahn here, with real autobahn timers) and
against a real ``nostr-relay`` 1.14, whose stored events are read back and checked with
nostr-tools' ``verifyEvent``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from typing import Any

import pytest
from coincurve import PrivateKey
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from harness.ports import free_tcp_port
from harness.procs import run_node_json_deferred
from harness.servers import start_nostr_relay
from tests.nostr.fakerelay import FakeRelay
from tgateway.nostr.event import EventTemplate, public_key_hex, sign
from tgateway.nostr.pool import RelayPool, RelayTimeout

pytestmark = pytest.mark.integration

USER = b"\x33" * 32
GATEWAY = PrivateKey(b"\x44" * 32)


def note(content: str, kind: int = 1, tags: Any = ()) -> Any:
    return sign(
        EventTemplate(kind=kind, created_at=int(time.time()), tags=tags, content=content), USER
    )


class PoolTestCase(TestCase):
    timeout = 60

    def make_pool(self, **kw: Any) -> RelayPool:
        kw.setdefault("private_key", GATEWAY)
        kw.setdefault("initial_delay", 0.2)
        kw.setdefault("max_delay", 1.0)
        kw.setdefault("jitter", lambda: 0.0)
        pool = RelayPool(reactor, **kw)
        pool.startService()
        self.addCleanup(pool.stopService)
        return pool


class FakeRelayLoopbackTests(PoolTestCase):
    def serve(self, relay: FakeRelay, port: int = 0) -> int:
        relay.factory.setProtocolOptions(
            openHandshakeTimeout=5, closeHandshakeTimeout=1, autoPingInterval=0
        )
        listening = reactor.listenTCP(port, relay.factory, interface="127.0.0.1")
        self.addCleanup(self.stop_serving, relay, listening)
        return int(listening.getHost().port)

    async def stop_serving(self, relay: FakeRelay, listening: Any) -> None:
        await listening.stopListening()
        for conn in list(relay.connections):
            conn.transport.abortConnection()
        await deferLater(reactor, 0.05, lambda: None)

    async def test_publish_query_auth(self) -> None:
        relay = FakeRelay(challenge="loopback-challenge", require_auth=True)
        port = self.serve(relay)
        relay.url = f"ws://127.0.0.1:{port}"
        pool = self.make_pool()
        event = note("over loopback")
        result = await pool.publish(event, relay.url, timeout=10)
        self.assertEqual(result, (True, ""))
        self.assertEqual(relay.authed, [public_key_hex(GATEWAY)])
        found = await pool.query(relay.url, [{"authors": [event.pubkey]}], timeout=10)
        self.assertEqual(found, [event])

    async def test_relay_down_then_up(self) -> None:
        port = free_tcp_port()
        url = f"ws://127.0.0.1:{port}"
        pool = self.make_pool()
        event = note("waited for the relay")
        publishing = Deferred.fromCoroutine(pool.publish(event, url, timeout=20))
        await deferLater(reactor, 0.5, lambda: None)
        self.assertFalse(publishing.called)
        self.assertFalse(pool.is_connected(url))
        relay = FakeRelay(url)
        self.serve(relay, port)
        result = await publishing
        self.assertEqual(result, (True, ""))
        self.assertIn(event.id, relay.events)

    async def test_timeout_when_nothing_listens(self) -> None:
        url = f"ws://127.0.0.1:{free_tcp_port()}"
        pool = self.make_pool()
        with self.assertRaises(RelayTimeout):
            await pool.publish(note("nobody"), url, timeout=0.5)


class NostrRelayTests(PoolTestCase):
    timeout = 120

    def start_relay(self, **kw: Any) -> Any:
        # not self.mktemp(): it is relative to the current folder (the repo root under pytest)
        directory = tempfile.mkdtemp(prefix="tg-nostr-relay-")
        self.addCleanup(shutil.rmtree, directory, True)
        relay = start_nostr_relay(directory, **kw)
        self.addCleanup(relay.stop)
        return relay

    async def test_publish_query_and_verify_with_nostr_tools(self) -> None:
        relay = self.start_relay()
        pool = self.make_pool()
        tags = [["x", "ab" * 20], ["t", "video"], ["title", "é😀 \u2028"]]
        events = [note(f'event {i} "quoted" \\ \n', kind=2003, tags=tags) for i in range(3)]
        results = await DeferredList(
            [Deferred.fromCoroutine(pool.publish(e, relay.url, timeout=15)) for e in events],
            fireOnOneErrback=True,
        )
        for ok, result in results:
            self.assertTrue(ok)
            self.assertTrue(result.accepted, result.message)
        again = await pool.publish(events[0], relay.url, timeout=15)
        self.assertTrue(again.delivered, again.message)
        found = await pool.query(relay.url, [{"kinds": [2003], "#t": ["video"]}], timeout=15)
        self.assertEqual(sorted(e.id for e in found), sorted(e.id for e in events))
        self.assertEqual({e.id: e for e in found}, {e.id: e for e in events})
        answer = await run_node_json_deferred(
            reactor,
            "nostr_relay_read.mjs",
            relay.url,
            json.dumps({"kinds": [2003], "authors": [events[0].pubkey]}),
            timeout=30,
        )
        self.assertTrue(answer["eose"])
        self.assertEqual(sorted(e["id"] for e in answer["events"]), sorted(e.id for e in events))
        self.assertEqual(answer["verified"], [True] * 3)
