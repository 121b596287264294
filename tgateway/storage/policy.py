"""What admins decided, in memory: tombstoned files, banned keys, users' own storage limits.

The rows live in SQL (``blocked_files``, ``users``: :mod:`tgateway.storage.blocked_files`,
:mod:`tgateway.storage.users`); :class:`Policy` reads them once when the storage starts (before
anything serves) and keeps them in sets and dictionaries, written durably first on every change.
Hot paths (tracker announces, peer handshakes, DHT queries, every upload's commit, every
authenticated request) only look them up.

It is built with the storage because everything that reads it is built after the storage: the
upload handler's ``quota`` and ``checks`` (:meth:`StoredBlockList.check_upload`), and, through
``Deps.blocks`` (the :class:`~tgateway.blocklist.BlockList` face), the tracker, DHT, peer, Nostr
and both authenticators. The admin component changes it through ``Deps.policy``. Enforcement does
not depend on ``admin.enabled``: only the admin routes do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.errors import Forbidden

from .api import Db, Received
from .blocked_files import BlockedFiles
from .users import KEEP, UserRecord, Users

__all__ = ["FileBlocked", "Policy", "StoredBlockList", "UserPolicy"]


class FileBlocked(Forbidden):
    """An upload of tombstoned content (403; Blossom adds the message as ``X-Reason``)."""

    code = "file_blocked"


class UserPolicy:
    """Per-user storage limits (else ``default_limit``) and bans."""

    log = Logger()

    def __init__(self, db: Db, *, default_limit: int) -> None:
        self.table = Users(db)
        self.default_limit = int(default_limit)
        self._limits: dict[str, int] = {}
        self._banned: set[str] = set()

    def load(self) -> None:
        """Read every row (blocking: start-up, before anything serves)."""
        self._limits.clear()
        self._banned.clear()
        for record in self.table.load():
            self._remember(record)
        if self._banned or self._limits:
            self.log.info("{banned} banned users, {limits} users with their own storage limit",
                          banned=len(self._banned), limits=len(self._limits))

    def _remember(self, record: UserRecord) -> None:
        if record.storage_limit is None:
            self._limits.pop(record.pubkey, None)
        else:
            self._limits[record.pubkey] = int(record.storage_limit)
        if record.banned:
            self._banned.add(record.pubkey)
        else:
            self._banned.discard(record.pubkey)

    def quota(self, owner: str) -> int:
        """The most bytes ``owner``'s files may take (the upload handler's quota)."""
        return self._limits.get(owner, self.default_limit)

    def storage_limit(self, owner: str) -> int | None:
        """``owner``'s own limit, None when the default applies."""
        return self._limits.get(owner)

    def is_banned(self, pubkey: str) -> bool:
        return pubkey in self._banned

    def banned_count(self) -> int:
        return len(self._banned)

    async def update(self, pubkey: str, *, storage_limit: Any = KEEP, banned: Any = KEEP,
                     by: str, now: float) -> UserRecord:
        """Write the change (``KEEP`` leaves a field as it is), then apply it in memory."""
        record = await self.table.update(pubkey, storage_limit=storage_limit, banned=banned,
                                         by=by, now=now)
        self._remember(record)
        return record


class StoredBlockList:
    """Tombstoned files and banned pubkeys (implements :class:`tgateway.blocklist.BlockList`)."""

    log = Logger()

    def __init__(self, db: Db, clock: IReactorTime, users: UserPolicy) -> None:
        self.table = BlockedFiles(db)
        self.clock = clock
        self.users = users
        self._sha256: set[str] = set()
        self._info_hashes: set[bytes] = set()
        # what the block list refused since start (tgateway_block_refusals_total): counted only
        # when an answer is yes, so the hot paths' lookups of files nobody blocked cost nothing more
        self.refusals = {"banned_key": 0, "blocked_file": 0, "blocked_info_hash": 0}

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
        if sha256 in self._sha256:
            self.refusals["blocked_file"] += 1
            return True
        return False

    def is_blocked_info_hash(self, info_hash: bytes) -> bool:
        if info_hash in self._info_hashes:
            self.refusals["blocked_info_hash"] += 1
            return True
        return False

    def is_banned(self, pubkey: str) -> bool:
        if self.users.is_banned(pubkey):
            self.refusals["banned_key"] += 1
            return True
        return False

    def count(self) -> int:
        """How many files are tombstoned."""
        return len(self._sha256)

    # the upload handler's check -------------------------------------------------------

    def check_upload(self, result: Received) -> None:
        """Refuse tombstoned bytes before they become visible (every way in)."""
        if self.is_blocked_sha256(result.sha256):
            raise FileBlocked("this file was removed by the operator of this gateway and is "
                              "not accepted again")

    # changes ----------------------------------------------------------------------------

    async def block(self, sha256: str, info_hash: str | None, *, reason: str, by: str) -> bool:
        """Tombstone a file (written durably first, then refused everywhere at once); False
        when it already was. What the components hold of it goes with the file's deletion
        (the content store's "deleted" event), which the admin does next."""
        new = await self.table.block(sha256, info_hash, reason=reason, by=by,
                                     now=self.clock.seconds())
        self._sha256.add(sha256)
        if info_hash:
            self._info_hashes.add(bytes.fromhex(info_hash))
        return new


@dataclass(frozen=True)
class Policy:
    """The block list and the user policy, read together at start."""

    users: UserPolicy
    blocks: StoredBlockList

    @classmethod
    def build(cls, db: Db, clock: IReactorTime, *, default_limit: int) -> Policy:
        users = UserPolicy(db, default_limit=default_limit)
        return cls(users, StoredBlockList(db, clock, users))

    def load(self) -> None:
        """Read every row (blocking: start-up, after the database opens, before anything
        serves)."""
        self.users.load()
        self.blocks.load()
