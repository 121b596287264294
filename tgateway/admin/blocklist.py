"""The one block list (implements :class:`tgateway.blocklist.BlockList`).

Tombstones (``blocked_files``) and bans (``users``, through :class:`~tgateway.admin.users.UserPolicy`)
are read once at start into sets and kept in sync on change: a tombstone is written durably, then
added to the sets, then announced to the subscribers (a later reactor turn). Hot paths (tracker
announces, peer handshakes, DHT queries, every upload's commit, every authenticated request) only
look the sets up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.blocklist import Blocked
from tgateway.errors import Forbidden
from tgateway.storage.api import Db, Received
from tgateway.storage.blocked_files import BlockedFiles

from .users import UserPolicy

__all__ = ["FileBlocked", "StoredBlockList"]


class FileBlocked(Forbidden):
    """An upload of tombstoned content (403; Blossom adds the message as ``X-Reason``)."""

    code = "file_blocked"


class StoredBlockList:
    """Tombstoned files and banned pubkeys, persisted in SQL, read from memory."""

    log = Logger()

    def __init__(self, db: Db, clock: IReactorTime, users: UserPolicy) -> None:
        self.table = BlockedFiles(db)
        self.clock = clock
        self.users = users
        self._sha256: set[str] = set()
        self._info_hashes: set[bytes] = set()
        self._subscribers: list[Callable[[Blocked], Any]] = []

    def load(self) -> None:
        """Read every tombstone (blocking: start-up, before anything serves)."""
        self._sha256.clear()
        self._info_hashes.clear()
        for sha, ih in self.table.load():
            self._sha256.add(sha)
            if ih:
                self._info_hashes.add(bytes.fromhex(ih))
        if self._sha256:
            self.log.info("block list: {n} files", n=len(self._sha256))

    # the seam -------------------------------------------------------------------------

    def is_blocked_sha256(self, sha256: str) -> bool:
        return sha256 in self._sha256

    def is_blocked_info_hash(self, info_hash: bytes) -> bool:
        return info_hash in self._info_hashes

    def is_banned(self, pubkey: str) -> bool:
        return self.users.is_banned(pubkey)

    def subscribe_blocked(self, callback: Callable[[Blocked], Any]) -> None:
        self._subscribers.append(callback)

    def count(self) -> int:
        """How many files are tombstoned."""
        return len(self._sha256)

    # the upload handler's check -------------------------------------------------------

    def check_upload(self, result: Received) -> None:
        """Refuse tombstoned bytes before they become visible (every way in)."""
        if result.sha256 in self._sha256:
            raise FileBlocked("this file was removed by the operator of this gateway and is "
                              "not accepted again")

    # changes ----------------------------------------------------------------------------

    async def block(self, sha256: str, info_hash: str | None, *, reason: str, by: str) -> bool:
        """Tombstone a file (written durably first); False when it already was."""
        new = await self.table.block(sha256, info_hash, reason=reason, by=by,
                                     now=self.clock.seconds())
        ih = bytes.fromhex(info_hash) if info_hash else None
        fresh = sha256 not in self._sha256 or (ih is not None and ih not in self._info_hashes)
        self._sha256.add(sha256)
        if ih is not None:
            self._info_hashes.add(ih)
        if fresh:
            event = Blocked(sha256=sha256, info_hash=ih)
            for cb in list(self._subscribers):
                self.clock.callLater(0, self._call, cb, event)
        return new

    def _call(self, cb: Callable[[Blocked], Any], event: Blocked) -> None:
        d = maybeDeferred(cb, event)
        d.addErrback(lambda f: self.log.failure("block list subscriber {cb!r} failed", f, cb=cb))
