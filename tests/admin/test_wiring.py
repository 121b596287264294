"""tap.makeService hands the one block list to every component (each through its narrow hook)
and mounts ``/api/admin`` only when ``admin.enabled``."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.admin.service import AdminService
from tgateway.config import parse_config
from tgateway.tap import makeService

IH = b"\x42" * 20


class WiringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="admin-wiring-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def build(self, **kw: Any) -> Any:
        d = self.dir
        config = parse_config({
            "data_dir": d,
            "dht": {"bootstrap_nodes": []},
            "storage": {"metadata_db": f"{d}/m.db", "blob_storage": f"{d}/b",
                        "chunk_storage": f"{d}/c"},
            **kw,
        })
        top = makeService({"config": config}, reactor=MemoryReactorClock())
        return top, top.gateway

    def test_every_component_reads_the_one_block_list(self) -> None:
        top, gw = self.build(admin={"default_user_storage_limit": 12345})
        admin = gw.admin
        blocks = admin.blocks
        services = list(top)
        # read from the database right after the storage opens, before anything serves
        self.assertIsInstance(services[1], AdminService)
        # the upload handler: the per-user limit and the tombstone check, for every way in
        self.assertEqual(gw.uploads.quota("ab" * 32), 12345)
        self.assertIn(blocks.check_upload, gw.uploads.checks)
        self.assertIs(gw.parts["blossom"].uploads, gw.uploads)
        # the tracker, the DHT and the peer refuse its info-hashes
        blocks._info_hashes.add(IH)
        self.assertIn(IH, gw.parts["tracker"].store.deny)
        self.assertTrue(gw.parts["dht"].refused(IH))
        peer = gw.parts["peer"]
        gw.store._info_hashes.add(IH)
        self.assertFalse(peer.factory.has_info_hash(IH))
        self.assertIn(peer.on_blocked, blocks._subscribers)
        self.assertIn(gw.parts["dht"].on_file_deleted, gw.store._on_deleted)
        # bans: sign-in and requests on both ports, and what the gateway publishes
        self.assertIs(gw.parts["users"].auth.bans, blocks)
        self.assertIs(gw.parts["blossom"].auth.bans, blocks)
        nostr = gw.parts["nostr"]
        self.assertIs(nostr.announcer.bans, blocks)
        self.assertIn(nostr.retractor.on_deleted, gw.store._on_deleted)
        # the admin routes, on the gateway's port
        self.assertIn("admin", gw.parts)

    def test_admin_disabled_mounts_no_route_and_still_enforces(self) -> None:
        _, gw = self.build(admin={"enabled": False})
        self.assertNotIn("admin", gw.parts)
        self.assertIsNotNone(gw.admin)
        self.assertIn(gw.admin.blocks.check_upload, gw.uploads.checks)

    def test_dht_only_has_no_block_list(self) -> None:
        _, gw = self.build(mode="dht-only")
        self.assertIsNone(gw.admin)
        self.assertFalse(gw.parts["dht"].refused(IH))
