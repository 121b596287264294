"""Retention's rules, as pure functions of a file's use and ``now``.

- ``max_file_age``: a file stored that long ago goes, however much it is used;
- ``cleanup_age``: a file whose last use (:attr:`FileUse.last_use`: stored, read through the
  chunk reader by a download, a stream, webseed, Blossom or a peer, uploaded again by an owner,
  or one of its transcoded outputs served) is that old goes;
- ``inactive_user_age``: a user with no sign-in and no upload for that long loses their
  sessions and sign-in record; their files follow the two rules above.

The dry run and the real run call the same :func:`expiry` with the same ``now``; the real run
asks it again under the store's lock (:meth:`ContentStore.remove_files`' ``still``), so a file
uploaded or read between the decision and its removal stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tgateway.storage.retention import FileUse

__all__ = ["Expired", "Reason", "Rules", "RunReport", "Tally", "expiry"]

Reason = Literal["max_file_age", "cleanup_age"]


@dataclass(frozen=True)
class Rules:
    cleanup_age: float
    max_file_age: float
    inactive_user_age: float

    def idle_before(self, now: float) -> float:
        return now - self.cleanup_age

    def created_before(self, now: float) -> float:
        return now - self.max_file_age

    def inactive_before(self, now: float) -> float:
        return now - self.inactive_user_age

    def to_json(self) -> dict[str, float]:
        return {"cleanup_age": self.cleanup_age, "max_file_age": self.max_file_age,
                "inactive_user_age": self.inactive_user_age}


def expiry(use: FileUse, now: float, rules: Rules) -> Reason | None:
    """Why ``use``'s file goes at ``now``, or None when it stays."""
    if use.created_at < rules.created_before(now):
        return "max_file_age"
    if use.last_use < rules.idle_before(now):
        return "cleanup_age"
    return None


@dataclass(frozen=True)
class Expired:
    """A file a run removes (or, dry, would remove)."""

    sha256: str
    size: int
    reason: Reason
    created_at: float
    last_use: float

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "reason": self.reason,
                "created_at": self.created_at, "last_use": self.last_use}


@dataclass
class Tally:
    """Counts and bytes of everything, the first ``keep`` items listed."""

    keep: int
    count: int = 0
    bytes: int = 0
    items: list[Any] = field(default_factory=list)

    def add(self, item: Any, size: int = 0) -> None:
        self.count += 1
        self.bytes += size
        if len(self.items) < self.keep:
            self.items.append(item)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "bytes": self.bytes,
                "items": [i.to_json() if hasattr(i, "to_json") else i for i in self.items]}


@dataclass
class RunReport:
    """What a run removed (``dry_run``: what it would remove)."""

    dry_run: bool
    now: float
    rules: Rules
    keep: int = 1000
    complete: bool = False  # False: stopped before the end (the gateway is stopping)
    files: Tally = field(init=False)
    by_reason: dict[str, int] = field(default_factory=lambda: {"max_file_age": 0,
                                                                "cleanup_age": 0})
    kept_in_use: int = 0  # decided, then read or uploaded again before removal: kept
    users: Tally = field(init=False)
    sessions_removed: int = 0
    storage: dict[str, Any] | None = None  # the storage check's report
    repaired: Tally = field(init=False)  # rows whose bytes were missing, removed
    database: dict[str, Any] = field(default_factory=dict)
    cache_blocks_swept: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.files = Tally(self.keep)
        self.users = Tally(self.keep)
        self.repaired = Tally(self.keep)

    def add_file(self, e: Expired) -> None:
        self.files.add(e, e.size)
        self.by_reason[e.reason] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run, "now": self.now, "rules": self.rules.to_json(),
            "complete": self.complete,
            "files": {**self.files.to_json(), "by_reason": dict(self.by_reason),
                      "kept_in_use": self.kept_in_use},
            "users": {**self.users.to_json(), "sessions_removed": self.sessions_removed},
            "storage": self.storage,
            "repaired": self.repaired.to_json(),
            "database": self.database,
            "cache_blocks_swept": self.cache_blocks_swept,
            "seconds": round(self.seconds, 3),
        }
