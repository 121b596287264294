"""One retention run: expired files, inactive users, the storage check and its repairs, the
database's upkeep. A dry run goes through the same steps and decisions and changes nothing.

The reactor's share of a run is small and bounded: candidates come a page at a time
(:data:`PAGE` files, one indexed query on the database thread), each page is decided on the
reactor (:func:`~tgateway.retention.core.expiry`, microseconds a file), removed in one durable
transaction with its bytes unlinked on a thread (:meth:`ContentStore.remove_files`); the storage
check works a shard at a time. Between two steps the reactor serves requests.

Crash safety is the store's: a removal commits the rows first, durably, then unlinks the bytes no
other file uses, so a ``kill -9`` at any point leaves at most bytes without a row, which the
storage check at the next start removes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.internet.defer import DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.storage.api import ContentStore, Db
from tgateway.storage.retention import (
    FileUse,
    _candidates_txn,
    _forget_users_txn,
    _inactive_users_txn,
    _upkeep_txn,
)

from .core import Expired, Rules, RunReport, expiry

__all__ = ["PAGE", "Retention", "RunInProgress"]

PAGE = 500  # files decided and removed together
USERS_PAGE = 1000
VACUUM_PAGES = 25_000  # database pages (4 KiB) given back per run at most


class RunInProgress(RuntimeError):
    """Another run (timed, or asked for) is going on."""


class Retention:
    """Runs retention over a content store (see the module docstring)."""

    log = Logger()

    def __init__(self, *, store: ContentStore, db: Db, clock: IReactorTime, rules: Rules,
                 keep: int = 1000, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.db = db
        self.clock = clock
        self.rules = rules
        self.keep = keep
        self._monotonic = monotonic
        self._lock = DeferredLock()
        self._stopping = False
        self.last: RunReport | None = None  # the last real run's report
        self.removed_files = {"max_file_age": 0, "cleanup_age": 0}  # since start
        self.removed_bytes = 0
        self.repaired_files = 0
        self.runs = 0

    @property
    def running(self) -> bool:
        return self._lock.locked

    def stop(self) -> None:
        """Make a run in progress stop after its current step."""
        self._stopping = True
        self.store.stop_check()

    async def run(self, *, dry_run: bool, wait: bool = True) -> RunReport:
        """A run (``dry_run``: what it would do). ``wait=False``: raise RunInProgress rather
        than wait for a run in progress."""
        if not wait and self._lock.locked:
            raise RunInProgress("a retention run is in progress")
        await self._lock.acquire()
        try:
            return await self._run(dry_run)
        finally:
            self._lock.release()

    async def _run(self, dry_run: bool) -> RunReport:
        started = self._monotonic()
        now = self.clock.seconds()
        report = RunReport(dry_run=dry_run, now=now, rules=self.rules, keep=self.keep)
        # What was read until now is in the database; reads from now on are asked about.
        await self.store.access.flush(restart_recent=True)
        await self._files(report, now)
        if not self._stopping:
            await self._users(report, now)
        if not self._stopping:
            await self._storage(report)
        if not self._stopping:
            report.database = await self.db.run(_upkeep_txn, VACUUM_PAGES, not dry_run)
            report.complete = True
        report.seconds = self._monotonic() - started
        if not dry_run:
            self.last = report
            self.runs += 1
        self._log(report)
        return report

    # files -------------------------------------------------------------------------------

    async def _files(self, report: RunReport, now: float) -> None:
        rules = self.rules

        def still(use: FileUse) -> bool:
            return expiry(use, now, rules) is not None

        after = ""
        while not self._stopping:
            page: list[FileUse] = await self.db.run(
                _candidates_txn, after, rules.idle_before(now), rules.created_before(now), PAGE)
            if not page:
                return
            after = page[-1].sha256
            doomed: dict[str, Expired] = {}
            for use in page:
                reason = expiry(use, now, rules)
                if reason is not None:
                    doomed[use.sha256] = Expired(use.sha256, use.size, reason, use.created_at,
                                                 use.last_use)
            if report.dry_run:
                for e in doomed.values():
                    report.add_file(e)
                continue
            fresh = [s for s in doomed if not self.store.access.touched_since(s, now)]
            report.kept_in_use += len(doomed) - len(fresh)
            if not fresh:
                continue
            removed = await self.store.remove_files(fresh, still=still)
            report.kept_in_use += len(fresh) - len(removed)
            for f in removed:
                e = doomed[f.sha256]
                report.add_file(e)
                self.removed_files[e.reason] += 1
                self.removed_bytes += e.size

    # users -------------------------------------------------------------------------------

    async def _users(self, report: RunReport, now: float) -> None:
        before = self.rules.inactive_before(now)
        seen: set[str] = set()
        while not self._stopping:
            page = [u for u in await self.db.run(_inactive_users_txn, before, USERS_PAGE)
                    if u.pubkey not in seen]
            if not page:
                return
            seen.update(u.pubkey for u in page)
            for u in page:
                report.users.add(u.pubkey)
            if report.dry_run:
                return  # a dry run leaves them, so the next page would be the same
            report.sessions_removed += await self.db.run(
                _forget_users_txn, [u.pubkey for u in page], before)

    # the storage check and its repairs ------------------------------------------------------

    async def _storage(self, report: RunReport) -> None:
        check = await self.store.check(remove=not report.dry_run, keep=self.keep)
        report.storage = check.to_json()
        missing = [m.sha256 for m in check.missing]
        if report.dry_run or not missing:
            for sha in missing:
                report.repaired.add(sha)
            return
        # A row whose bytes are gone cannot be served: it goes (and "deleted" fires, so the
        # tracker, the DHT and the peer stop offering it), with its bytes left on disk.
        for f in await self.store.remove_files(missing):
            report.repaired.add(f.sha256, f.size)
            self.repaired_files += 1
            self.log.warn("removed the row of {sha256}: its bytes were missing", sha256=f.sha256)

    def _log(self, report: RunReport) -> None:
        self.log.info(
            "retention {kind} {state} in {seconds:.1f} s: {verb} {files} files ({bytes} bytes:"
            " {idle} unused for cleanup_age, {old} past max_file_age, {kept} kept in use),"
            " {users} inactive users ({sessions} sessions), {repaired} rows without bytes;"
            " database: {database}",
            kind="dry run" if report.dry_run else "run",
            state="finished" if report.complete else "stopped", seconds=report.seconds,
            verb="would remove" if report.dry_run else "removed", files=report.files.count,
            bytes=report.files.bytes, idle=report.by_reason["cleanup_age"],
            old=report.by_reason["max_file_age"], kept=report.kept_in_use,
            users=report.users.count, sessions=report.sessions_removed,
            repaired=report.repaired.count, database=report.database,
        )
