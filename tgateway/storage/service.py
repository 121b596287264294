"""The storage component: the metadata database, the content store, the one upload handler, and
what admins decided (:mod:`tgateway.storage.policy`: the block list, users' limits and bans).

It is built first and its service starts first and stops last (``tap``'s ordered stop): every
other component has finished with the store and the database (a transcode storing its outputs,
an outbox write) before they close. Once open, the policy is read (before anything serves) and
the storage check runs in the background.

It offers the block list to every later component (``blocks``: the tracker, DHT and peer refuse
tombstoned info-hashes, Nostr publishes nothing for a banned key, the authenticators refuse a
banned key), and the upload handler it builds refuses tombstoned bytes and applies each user's
own storage limit, on every way in. The admin component changes the policy (``policy``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tgateway.component import Component, Deps, Provided, Status
from tgateway.config import StorageConfig
from tgateway.metrics import Collect, counter, gauge
from tgateway.uploads import Uploads

from .access import FLUSH_INTERVAL
from .crashpoints import CrashPoints
from .db import Database
from .disk import DiskLayout
from .policy import Policy
from .store import LocalContentStore

__all__ = ["Storage", "StorageService", "build"]

log = Logger()


class StorageService(Service):
    """Opens the database and the content store first, and reads the policy; closes them last.

    Once open, the storage check runs in the background (it does not delay serving and is safe
    against uploads and deletions meanwhile): bytes a crash left without a row are removed,
    rows whose bytes are missing are logged. Stopping stops the check after its current shard.
    The reads noted by the access log are written every ``FLUSH_INTERVAL``, and at stop.
    """

    name = "storage"

    def __init__(self, db: Database, store: LocalContentStore, clock: IReactorTime,
                 policy: Policy) -> None:
        self.db = db
        self.store = store
        self.policy = policy
        self._check: Deferred[Any] | None = None
        self._flush = LoopingCall(self._flush_access)
        self._flush.clock = clock

    def startService(self) -> None:
        self.db.open()
        self.store.start()
        self.policy.load()
        super().startService()
        check = Deferred.fromCoroutine(self.store.check())
        check.addErrback(lambda f: log.failure("the storage check failed", f))
        self._check = check
        self._flush.start(FLUSH_INTERVAL, now=False)

    def _flush_access(self) -> Deferred[Any]:
        d = Deferred.fromCoroutine(self.store.access.flush())
        d.addErrback(lambda f: log.failure("writing the last reads failed", f))
        return d

    async def _stop(self) -> None:
        check, self._check = self._check, None
        if check is not None and not check.called:
            self.store.stop_check()
            await check
        if self._flush.running:
            self._flush.stop()
        await self._flush_access()
        self.store.stop()
        self.db.close()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


@dataclass(frozen=True)
class Storage:
    """What the storage component built."""

    db: Database
    store: LocalContentStore
    uploads: Uploads
    policy: Policy
    clock: IReactorTime

    async def status(self) -> Status:
        """For ``GET /api/health``: files, bytes, chunks, free space, the chunk cache, and how
        long the database took to answer (``db_seconds``: the stats query, with its wait for
        the one database thread). A database that fails is ``{"status": "down"}``."""
        clock = self.clock
        started = clock.seconds()
        try:
            stats = await self.store.stats()
        except Exception as e:
            return {"status": "down", "error": f"{type(e).__name__}: {e}",
                    "free_bytes": self._free()}
        return {"status": "ok", **stats, "free_bytes": self._free(),
                "db_seconds": round(clock.seconds() - started, 6),
                "cache": self.store.reader.cache.stats()}

    def _free(self) -> int | None:
        try:
            return self.store.free_space()
        except OSError:
            return None  # the storage folder is gone

    def families(self) -> Iterator[Metric]:
        up = self.uploads
        yield counter("tgateway_uploads", "Uploads by result (stored, duplicate: bytes already "
                      "stored, refused)", ("result",), {(r,): n for r, n in list(up.results.items())})
        yield counter("tgateway_ingested_bytes", "Upload bytes received", (), {(): up.ingested})
        yield counter("tgateway_block_refusals", "What the block list refused: requests and "
                      "publications of banned keys, uploads of tombstoned files, announces and "
                      "peer requests of their info-hashes", ("kind",),
                      {(k,): n for k, n in self.policy.blocks.refusals.items()})
        free = self._free()
        if free is not None:
            yield gauge("tgateway_storage_free_bytes", "Free bytes on the storage's disk", (),
                        {(): free})


def build(section: StorageConfig, deps: Deps) -> Component[Storage]:
    db = Database(deps.reactor, section.metadata_db)
    store = LocalContentStore(reactor=deps.reactor, db=db,
                              layout=DiskLayout(section.blob_storage, section.chunk_storage),
                              config=section, crash_points=CrashPoints.from_environ(os.environ))
    policy = Policy.build(db, deps.reactor,
                          default_limit=int(deps.config.admin.default_user_storage_limit))
    # every way in: the user's own storage limit, and tombstoned bytes refused at commit
    uploads = Uploads(store=store, quota=policy.users.quota, checks=[policy.blocks.check_upload])
    storage = Storage(db, store, uploads, policy, deps.reactor)
    return Component(
        name="storage", part=storage, services=[StorageService(db, store, deps.reactor, policy)],
        report=storage.status, metrics=[Collect(storage.families)],
        provides=Provided(store=store, db=db, uploads=uploads, blocks=policy.blocks,
                          policy=policy),
    )
