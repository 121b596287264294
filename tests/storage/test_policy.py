"""The block list and the user policy: SQL that survives a restart, answers read from memory,
the upload handler's check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.protocols import assert_implements
from tgateway.blocklist import BlockList
from tgateway.storage.db import SyncDatabase
from tgateway.storage.policy import FileBlocked, Policy, StoredBlockList, UserPolicy

SHA = "ab" * 32
IH = "cd" * 20
ALICE = "a1" * 32
ADMIN = "ad" * 32


@dataclass(frozen=True)
class Result:
    sha256: str
    size: int


def run(coro: Any) -> Deferred[Any]:
    return Deferred.fromCoroutine(coro)


class BlockListTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.db = SyncDatabase()
        self.db.open()
        self.clock = Clock()
        self.clock.advance(1000)

    def fresh(self) -> StoredBlockList:
        """What a restarted gateway builds and loads from the same database."""
        policy = Policy.build(self.db, self.clock, default_limit=10_000)
        policy.load()
        return policy.blocks

    def test_is_the_block_list_seam(self) -> None:
        assert_implements(self.fresh(), BlockList)

    def test_a_tombstone_survives_a_restart_and_is_answered_from_memory(self) -> None:
        blocks = self.fresh()
        self.assertFalse(blocks.is_blocked_sha256(SHA))
        self.assertTrue(self.successResultOf(run(blocks.block(SHA, IH, reason="spam",
                                                              by=ADMIN))))
        self.assertFalse(self.successResultOf(run(blocks.block(SHA, IH, reason="again",
                                                               by=ADMIN))))
        self.assertTrue(blocks.is_blocked_sha256(SHA))
        self.assertTrue(blocks.is_blocked_info_hash(bytes.fromhex(IH)))
        again = self.fresh()
        self.assertTrue(again.is_blocked_sha256(SHA))
        self.assertTrue(again.is_blocked_info_hash(bytes.fromhex(IH)))
        self.assertFalse(again.is_blocked_info_hash(b"\x00" * 20))
        row = self.successResultOf(run(again.table.get(SHA)))
        self.assertEqual((row.reason, row.blocked_by, row.blocked_at), ("spam", ADMIN, 1000))
        # hot paths never touch the database: it is closed, the answers stay
        self.db.close()
        self.assertTrue(again.is_blocked_sha256(SHA))
        self.assertTrue(again.is_blocked_info_hash(bytes.fromhex(IH)))

    def test_an_info_hash_learnt_later_is_refused_too(self) -> None:
        # a hash that was never stored here: no info-hash, filled in if it is seen later
        blocks = self.fresh()
        other = "ef" * 32
        self.successResultOf(run(blocks.block(other, None, reason="", by=ADMIN)))
        self.assertTrue(blocks.is_blocked_sha256(other))
        self.successResultOf(run(blocks.block(other, "12" * 20, reason="", by=ADMIN)))
        self.assertTrue(blocks.is_blocked_info_hash(bytes.fromhex("12" * 20)))
        self.assertTrue(self.fresh().is_blocked_info_hash(bytes.fromhex("12" * 20)))

    def test_the_upload_check_refuses_tombstoned_bytes(self) -> None:
        blocks = self.fresh()
        blocks.check_upload(Result(SHA, 10))  # not blocked: passes
        self.successResultOf(run(blocks.block(SHA, IH, reason="", by=ADMIN)))
        err = self.assertRaises(FileBlocked, blocks.check_upload, Result(SHA, 10))
        self.assertEqual((err.status, err.code), (403, "file_blocked"))
        blocks.check_upload(Result("ef" * 32, 10))


class UserPolicyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.db = SyncDatabase()
        self.db.open()
        self.addCleanup(self.db.close)

    def fresh(self) -> UserPolicy:
        users = UserPolicy(self.db, default_limit=10_000)
        users.load()
        return users

    def test_limits_and_bans_survive_a_restart(self) -> None:
        users = self.fresh()
        self.assertEqual(users.quota(ALICE), 10_000)
        self.assertFalse(users.is_banned(ALICE))
        self.successResultOf(run(users.update(ALICE, storage_limit=500, by=ADMIN, now=5.0)))
        self.assertEqual(users.quota(ALICE), 500)
        record = self.successResultOf(run(users.update(ALICE, banned=True, by=ADMIN, now=6.0)))
        self.assertEqual((record.storage_limit, record.banned, record.banned_at), (500, True, 6.0))
        self.assertTrue(users.is_banned(ALICE))
        again = self.fresh()
        self.assertEqual((again.quota(ALICE), again.is_banned(ALICE)), (500, True))
        # lifted, and back to the default limit
        self.successResultOf(run(again.update(ALICE, storage_limit=None, banned=False, by=ADMIN,
                                              now=7.0)))
        self.assertEqual((again.quota(ALICE), again.is_banned(ALICE)), (10_000, False))
        third = self.fresh()
        self.assertEqual((third.quota(ALICE), third.is_banned(ALICE), third.banned_count()),
                         (10_000, False, 0))
