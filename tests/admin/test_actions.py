"""Every admin action ends with one audit row and one log event, both naming the admin's key."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tgateway.admin.actions import Moderation
from tgateway.storage.admin_audit import AuditLog
from tgateway.storage.db import SyncDatabase
from tgateway.storage.policy import Policy

ADMIN = "ad" * 32
BOB = "b2" * 32


def run(coro: Any) -> Any:
    return Deferred.fromCoroutine(coro)


class EmptyStore:
    """A content store holding nothing (what update_user reads of it)."""

    async def usage(self, owner: str) -> tuple[int, int]:
        return 0, 0


class AuditTests(SynchronousTestCase):
    def test_an_action_is_kept_and_logged_with_the_admins_key(self) -> None:
        db = SyncDatabase()
        db.open()
        self.addCleanup(db.close)
        clock = Clock()
        clock.advance(1234)
        policy = Policy.build(db, clock, default_limit=100)
        policy.load()
        moderation = Moderation(store=EmptyStore(), blocks=policy.blocks,  # type: ignore[arg-type]
                                users=policy.users, audit=AuditLog(db), reports=None,
                                clock=clock, admins=frozenset({ADMIN}))
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.successResultOf(run(moderation.update_user(ADMIN, BOB, banned=True)))
        self.assertTrue(policy.blocks.is_banned(BOB))
        [entry], total = self.successResultOf(run(AuditLog(db).page(target=None, limit=10,
                                                                   offset=0)))
        self.assertEqual((total, entry.admin, entry.action, entry.target, entry.at),
                         (1, ADMIN, "user.update", BOB, 1234))
        self.assertTrue(entry.detail["banned"])
        [logged] = [e for e in events if e.get("log_namespace") == "tgateway.admin.actions.Moderation"]
        self.assertEqual((logged["admin"], logged["action"], logged["target"]),
                         (ADMIN, "user.update", BOB))
