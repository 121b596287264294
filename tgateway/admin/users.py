"""What admins decided about users, in memory: storage limits and bans.

Read once at start from the ``users`` table (:mod:`tgateway.storage.users`) and kept in sync by
:meth:`UserPolicy.update`, which writes the row first. :meth:`quota` is the storage limit the
upload handler's quota check uses (inside the store's commit), and :meth:`is_banned` is read on
every authenticated request: both are dictionary lookups.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from tgateway.storage.api import Db
from tgateway.storage.users import KEEP, UserRecord, Users

__all__ = ["UserPolicy"]


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
