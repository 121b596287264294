"""The outbox end to end on loopback: a real database file, the relay pool, real relays.

- with nostr-relay 1.14: the event is delivered, and nostr-tools reads it back and verifies it;
- relay down while publishing, then up: the event arrives without a restart;
- gateway restarted in between (relay still down during the first run): it arrives, once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from coincurve import PrivateKey
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from harness.ports import free_tcp_port
from harness.procs import run_node_json_deferred
from harness.servers import start_nostr_relay
from tests.nostr.fakerelay import FakeRelay
from tgateway.nostr.event import EventTemplate, sign
from tgateway.nostr.outbox import Outbox
from tgateway.nostr.pool import RelayPool
from tgateway.storage.db import Database
from tgateway.storage.nostr_outbox import OutboxStore

pytestmark = pytest.mark.integration

GATEWAY = PrivateKey(b"\x55" * 32)
REF = "cd" * 32


def announcement(title: str) -> Any:
    template = EventTemplate(
        kind=2003,
        created_at=int(time.time()),
        tags=(("title", title), ("x", "ef" * 20), ("t", "test")),
        content=f"{title} description",
    )
    return sign(template, GATEWAY)


class Gateway:
    """The pieces of one gateway run: database, pool, outbox (started in that order)."""

    def __init__(self, db_path: str) -> None:
        self.db = Database(reactor, db_path)
        self.db.open()
        self.pool = RelayPool(
            reactor, private_key=GATEWAY, initial_delay=0.2, max_delay=1.0, jitter=lambda: 0.0
        )
        self.outbox = Outbox(
            OutboxStore(self.db),
            self.pool,
            reactor,
            publish_timeout=2.0,
            retry_initial=0.5,
            retry_max=2.0,
            jitter=lambda: 0.0,
        )
        self.pool.startService()
        self.outbox.startService()
        self.stopped = False

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.outbox.running:
            await self.outbox.stopService()
        if self.pool.running:
            await self.pool.stopService()
        self.db.close()

    async def statuses(self) -> dict[str, str]:
        rows = await self.outbox.deliveries_for_ref(REF)
        return {r.relay_url: r.status for r in rows}


class OutboxLoopbackTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tg-outbox-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.db_path = os.path.join(self.dir, "gateway.sqlite3")

    def gateway(self) -> Gateway:
        gw = Gateway(self.db_path)
        self.addCleanup(gw.stop)
        return gw

    async def wait_until(
        self, check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}")
            await deferLater(reactor, 0.1, lambda: None)

    def serve(self, relay: FakeRelay, port: int) -> None:
        relay.factory.setProtocolOptions(openHandshakeTimeout=5, autoPingInterval=0)
        listening = reactor.listenTCP(port, relay.factory, interface="127.0.0.1")

        async def stop() -> None:
            await listening.stopListening()
            for conn in list(relay.connections):
                conn.transport.abortConnection()
            await deferLater(reactor, 0.05, lambda: None)

        self.addCleanup(stop)

    async def test_delivered_to_nostr_relay_and_verified_by_nostr_tools(self) -> None:
        relay_dir = os.path.join(self.dir, "relay")
        relay = start_nostr_relay(relay_dir)
        self.addCleanup(relay.stop)
        gw = self.gateway()
        event = announcement("real relay")
        self.assertEqual(await gw.outbox.publish(event, [relay.url], ref=REF), 1)

        async def accepted() -> bool:
            return await gw.statuses() == {relay.url: "accepted"}

        await self.wait_until(accepted, what="the relay's OK")
        answer = await run_node_json_deferred(
            reactor, "nostr_relay_read.mjs", relay.url, json.dumps({"ids": [event.id]}), timeout=30
        )
        self.assertEqual([e["id"] for e in answer["events"]], [event.id])
        self.assertEqual(answer["verified"], [True])
        self.assertEqual(answer["events"][0]["tags"], [list(t) for t in event.tags])

    async def test_relay_down_then_up_without_restart(self) -> None:
        port = free_tcp_port()
        url = f"ws://127.0.0.1:{port}"
        gw = self.gateway()
        event = announcement("relay was down")
        await gw.outbox.publish(event, [url], ref=REF)
        await deferLater(reactor, 3.0, lambda: None)  # at least one attempt timed out
        rows = await gw.outbox.deliveries_for_ref(REF)
        self.assertEqual(rows[0].status, "pending")
        self.assertGreaterEqual(rows[0].attempts, 1)
        relay = FakeRelay(url)
        self.serve(relay, port)

        async def accepted() -> bool:
            return await gw.statuses() == {url: "accepted"}

        await self.wait_until(accepted, what="delivery after the relay came up")
        self.assertEqual(list(relay.events), [event.id])

    async def test_gateway_restarted_while_relay_down(self) -> None:
        port = free_tcp_port()
        url = f"ws://127.0.0.1:{port}"
        first = self.gateway()
        event = announcement("survives a restart")
        await first.outbox.publish(event, [url], ref=REF)
        await deferLater(reactor, 0.5, lambda: None)
        await first.stop()

        relay = FakeRelay(url)
        self.serve(relay, port)
        second = self.gateway()

        async def accepted() -> bool:
            return await second.statuses() == {url: "accepted"}

        await self.wait_until(accepted, what="delivery after the restart")
        self.assertEqual(list(relay.events), [event.id])
        self.assertEqual(len(relay.messages("EVENT")), 1)  # it arrived once
