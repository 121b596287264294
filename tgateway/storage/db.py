"""The metadata database: one SQLite file, one dedicated thread, numbered migrations.

All SQL of the project lives in ``tgateway/storage/``. Stores call ``await db.run(fn, *args)``:
``fn(conn, *args)`` runs on the database thread with a ``sqlite3.Connection`` inside a
transaction (committed when ``fn`` returns, rolled back when it raises). Nothing touches the
connection from the reactor thread.

Schema files are ``schema/NNN_name.sql``; each is applied once, in order, inside a transaction,
and recorded in the ``schema_version`` table. Numbering by component: 001-009 storage,
010-019 nostr/users/auth, 020-029 blossom, 030-039 transcode, 040-049 admin/cleanup.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")

PRAGMAS = (
    # A new database gives free pages back in steps (retention's incremental vacuum); an
    # existing one keeps its mode (only a VACUUM changes it): this is then a no-op.
    "PRAGMA auto_vacuum=INCREMENTAL",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # with WAL: durable against application crashes, fast
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA cache_size=-16384",  # 16 MiB page cache
    "PRAGMA mmap_size=134217728",
)

_SCHEMA_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def schema_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in ``schema/``, in order."""
    folder = resources.files("tgateway.storage") / "schema"
    out = []
    for entry in folder.iterdir():
        m = _SCHEMA_RE.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    out.sort()
    versions = [v for v, _, _ in out]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"duplicate schema versions in {folder}")
    return out


def connect(path: str) -> sqlite3.Connection:
    """Open the database with the project's pragmas (``:memory:`` for tests)."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every schema file not applied yet; return the names applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
    applied = []
    for version, name, sql in schema_files():
        if version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version(version, name, applied_at) VALUES (?, ?, julianday('now'))",
                (version, name),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def _split_sql(sql: str) -> list[str]:
    statements, current = [], []
    for line in sql.splitlines():
        current.append(line)
        candidate = "\n".join(current)
        if sqlite3.complete_statement(candidate):
            if candidate.strip().strip(";").strip():
                statements.append(candidate)
            current = []
    rest = "\n".join(current).strip()
    if rest and not rest.startswith("--"):
        statements.append(rest)
    return statements


def transaction(
    conn: sqlite3.Connection, fn: Callable[..., T], *args: Any, durable: bool = False
) -> T:
    """Run ``fn(conn, *args)`` inside BEGIN IMMEDIATE/COMMIT (ROLLBACK on error).

    ``durable``: the commit is synced to disk before this returns (``synchronous=FULL`` for
    this transaction; the project's default, NORMAL in WAL mode, survives a crash of the
    process but may lose the last commits to a power cut). For commits that must be on disk
    before something irreversible follows them, such as removing a deleted file's bytes.
    """
    if durable:
        conn.execute("PRAGMA synchronous=FULL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        if durable:
            conn.execute("PRAGMA synchronous=NORMAL")
    return result


class DatabaseClosed(RuntimeError):
    """A query was made after the database was closed (the gateway is stopping)."""


class Database:
    """The SQLite connection and the one thread that uses it."""

    log = Logger()

    def __init__(self, reactor: IReactorFromThreads, path: str) -> None:
        self._reactor = reactor
        self.path = path
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="tgateway-db")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open, tune and migrate synchronously (start-up, before the reactor serves)."""
        self._conn = connect(self.path)
        applied = migrate(self._conn)
        if applied:
            self.log.info("database {path}: applied {applied}", path=self.path, applied=applied)
        self._pool.start()

    def close(self) -> None:
        if self._pool.joined:
            return
        self._pool.stop()
        if self._conn is not None:
            try:
                self._conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
            self._conn.close()
            self._conn = None

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], durable: bool = False) -> T:
        assert self._conn is not None, "database is not open"
        with self._lock:
            return transaction(self._conn, fn, *args, durable=durable)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` now, blocking: only for start-up, before anything serves."""
        return self._call(fn, args)

    def run(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> Deferred[T]:
        """Run ``fn(conn, *args)`` in a transaction on the database thread (``durable``: see
        :func:`transaction`). After ``close`` it fails at once with :class:`DatabaseClosed`
        (a stopped pool would never run it)."""
        if self._pool.joined:
            return fail(DatabaseClosed(f"database {self.path} is closed"))
        return deferToThreadPool(self._reactor, self._pool, self._call, fn, args, durable)


class SyncDatabase:
    """Same interface, run inline: for tests and start-up tools (``:memory:`` works)."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        self._conn = connect(self.path)
        migrate(self._conn)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._conn is not None, "database is not open"
        return transaction(self._conn, fn, *args)

    def run(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> Deferred[T]:
        from twisted.internet.defer import fail, succeed

        assert self._conn is not None, "database is not open"
        try:
            return succeed(transaction(self._conn, fn, *args, durable=durable))
        except Exception:
            return fail()


__all__ = ["Database", "DatabaseClosed", "SyncDatabase", "connect", "migrate", "transaction", "schema_files"]
