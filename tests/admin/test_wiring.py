"""tap.makeService hands the one block list (built with the storage) to every component through
``Deps.blocks``, and builds the admin component (its routes mounted on the gateway's port) only
when ``admin.enabled``."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.admin.routes import AdminApi
from tgateway.config import parse_config
from tgateway.storage.service import StorageService
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
        c = gw.components
        policy = c.storage.policy
        blocks = policy.blocks
        self.assertIs(gw.deps.blocks, blocks)
        self.assertIs(gw.deps.policy, policy)
        # read from the database when the storage opens, before anything serves
        [storage_service] = [s for s in top if isinstance(s, StorageService)]
        self.assertIs(storage_service.policy, policy)
        self.assertEqual(list(top)[0], storage_service)
        # the upload handler: the per-user limit and the tombstone check, for every way in
        self.assertEqual(gw.uploads.quota("ab" * 32), 12345)
        self.assertIn(blocks.check_upload, gw.uploads.checks)
        self.assertIs(c.blossom.uploads, gw.uploads)
        # the tracker, the DHT and the peer refuse its info-hashes
        blocks._info_hashes.add(IH)
        self.assertIn(IH, c.tracker.store.deny)
        self.assertTrue(c.dht.refused(IH))
        gw.store._index.info_hashes.add(IH)
        self.assertFalse(c.peer.factory.has_info_hash(IH))
        # a deletion (an admin's too) reaches the DHT, the peer and NIP-09
        self.assertIn(c.dht.on_file_deleted, gw.store._on_deleted)
        self.assertIn(c.peer.on_file_deleted, gw.store._on_deleted)
        self.assertIn(c.nostr.retractor.on_deleted, gw.store._on_deleted)
        # bans: sign-in and requests on both ports, and what the gateway publishes
        self.assertIs(c.gateway.users.auth.bans, blocks)
        self.assertIs(c.blossom.auth.bans, blocks)
        self.assertIs(c.nostr.announcer.bans, blocks)
        # the admin routes, on the gateway's port, changing the same policy
        self.assertIsInstance(c.admin, AdminApi)
        self.assertIs(c.admin.moderation.blocks, blocks)
        self.assertIs(c.admin.moderation.users, policy.users)
        self.assertIs(c.admin.transcoding, c.transcode)
        self.assertIs(c.admin.auth, c.gateway.users.auth)

    def test_admin_disabled_builds_no_routes_and_still_enforces(self) -> None:
        _, gw = self.build(admin={"enabled": False})
        self.assertIsNone(gw.components.admin)
        self.assertNotIn("admin", [c.name for c in gw.components])
        self.assertIn(gw.deps.blocks.check_upload, gw.uploads.checks)
        self.assertIs(gw.components.tracker.store.deny.blocked.__self__, gw.deps.blocks)

    def test_blossom_only_enforces_without_the_admin(self) -> None:
        _, gw = self.build(mode="blossom-only")
        self.assertEqual([c.name for c in gw.components], ["storage", "retention", "blossom"])
        self.assertIs(gw.components.blossom.auth.bans, gw.deps.blocks)
        self.assertIn(gw.deps.blocks.check_upload, gw.uploads.checks)

    def test_dht_only_has_no_block_list(self) -> None:
        _, gw = self.build(mode="dht-only")
        self.assertIsNone(gw.deps.blocks)
        self.assertFalse(gw.components.dht.refused(IH))
