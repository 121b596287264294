"""NIP-35 announcements end to end (without HTTP): a "file stored" event reaches the
NostrService, the kind 2003 event goes through the outbox to nostr-relay 1.14, and nostr-tools
reads it back and verifies it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from harness.procs import run_node_json_deferred
from harness.servers import start_nostr_relay
from tests.nostr.test_service import LINKS, FakeStore, stored_file
from tgateway.config import NostrConfig
from tgateway.nostr.service import NostrService
from tgateway.storage.db import Database
from tgateway.storage.model import UploadContext

pytestmark = pytest.mark.integration


class AnnounceTests(TestCase):
    timeout = 120

    async def test_kind_2003_read_back_with_nostr_tools(self) -> None:
        directory = tempfile.mkdtemp(prefix="tg-announce-")
        self.addCleanup(shutil.rmtree, directory, True)
        relay = start_nostr_relay(os.path.join(directory, "relay"))
        self.addCleanup(relay.stop)
        db = Database(reactor, os.path.join(directory, "gateway.sqlite3"))
        db.open()
        self.addCleanup(db.close)
        store = FakeStore()
        svc = NostrService(
            NostrConfig(relays=(relay.url,)),
            data_dir=directory,
            db=db,
            links=LINKS,
            reactor=reactor,
            store=store,
        )
        store.subscribe_stored(svc.announcer.on_stored)  # as tap subscribes the component
        svc.startService()
        self.addCleanup(svc.stopService)

        context = UploadContext(title="Loopback clip", description="seen on nostr", tags=("test",))
        await store.fire(stored_file(), context)

        deadline = time.monotonic() + 30
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = await svc.announcer.announcements(stored_file().sha256)
            if rows and rows[0]["status"] != "pending":
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual([(r["relay"], r["status"]) for r in rows], [(relay.url, "accepted")])

        answer = await run_node_json_deferred(
            reactor,
            "nostr_relay_read.mjs",
            relay.url,
            json.dumps({"kinds": [2003], "authors": [svc.pubkey]}),
            timeout=30,
        )
        self.assertEqual(answer["verified"], [True])
        [event] = answer["events"]
        self.assertEqual(event["id"], rows[0]["event_id"])
        tags = {t[0]: t[1:] for t in event["tags"]}
        self.assertEqual(tags["x"], [stored_file().info_hash])
        self.assertEqual(tags["title"], ["Loopback clip"])
        self.assertEqual(event["content"], "seen on nostr")
        self.assertEqual(
            [t[1] for t in event["tags"] if t[0] == "tracker"], list(LINKS.tracker_urls)
        )
