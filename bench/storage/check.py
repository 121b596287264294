#!/usr/bin/env python3
"""The storage check over a big store: how long it takes, how much it holds up the reactor.

    .venv/bin/python bench/storage/check.py [--chunked 20000] [--chunks-per-file 10]
                                            [--blobs 50000] [--orphans 1000] [--dir DIR]

Builds a store in a fresh folder: ``--chunked`` chunked files of ``--chunks-per-file`` chunks
each and ``--blobs`` blobs (rows written straight into the database; on disk each blob and
chunk is an empty file at its content address: the check looks at names, not contents), plus
``--orphans`` unreferenced chunks and as many unreferenced blobs. Then runs
``LocalContentStore.check()`` on the real reactor with the threaded store and database, while a
10 ms LoopingCall measures the reactor's lag (how late each tick fires). Prints one JSON line:
files on disk, seconds, orphans removed, lag (max, p99), peak RSS growth.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred

from tgateway.config import StorageConfig
from tgateway.storage.db import Database
from tgateway.storage.disk import DiskLayout
from tgateway.storage.store import LocalContentStore


def name(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def touch(path: Path) -> None:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def build(folder: Path, chunked: int, per_file: int, blobs: int, orphans: int) -> int:
    layout = DiskLayout(folder / "blobs", folder / "chunks")
    layout.prepare()
    db = Database(None, str(folder / "metadata.db"))
    db.open()

    def fill(conn: Any) -> None:
        for i in range(chunked):
            sha = name("file", i)
            conn.execute(
                "INSERT INTO files (sha256, size, name, mime, storage, piece_length, info_hash,"
                " info, created_at) VALUES (?, 0, 'f', 'x/y', 'chunked', 1, ?, x'00', 0)",
                (sha, name("ih", i)[:40]))
            conn.executemany(
                "INSERT INTO file_chunks (file_sha256, idx, chunk_sha256, offset, size)"
                " VALUES (?, ?, ?, 0, 0)", [(sha, k, name("chunk", i, k)) for k in range(per_file)])
        for i in range(blobs):
            conn.execute(
                "INSERT INTO files (sha256, size, name, mime, storage, piece_length, info_hash,"
                " info, created_at) VALUES (?, 0, 'f', 'x/y', 'blob', 1, ?, x'00', 0)",
                (name("blob", i), name("bih", i)[:40]))

    db.run_sync(fill)
    db.close()
    for i in range(chunked):
        for k in range(per_file):
            touch(layout.chunk_path(name("chunk", i, k)))
    for i in range(blobs):
        touch(layout.blob_path(name("blob", i)))
    for i in range(orphans):
        touch(layout.chunk_path(name("orphan chunk", i)))
        touch(layout.blob_path(name("orphan blob", i)))
    return chunked * per_file + blobs + 2 * orphans


async def measure(folder: Path) -> dict[str, Any]:
    db = Database(reactor, str(folder / "metadata.db"))
    db.open()
    store = LocalContentStore(reactor=reactor, db=db,
                              layout=DiskLayout(folder / "blobs", folder / "chunks"),
                              config=StorageConfig())
    store.start()
    lags: list[float] = []
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        lags.append(max(0.0, now - last[0] - 0.01))
        last[0] = now

    loop = task.LoopingCall(tick)
    loop.start(0.01, now=False)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    report = await store.check()
    seconds = time.monotonic() - started
    loop.stop()
    store.stop()
    db.close()
    lags.sort()
    return {
        "seconds": round(seconds, 2),
        "blobs_seen": report.blobs_seen,
        "chunks_seen": report.chunks_seen,
        "orphans_removed": report.orphan_blobs.count + report.orphan_chunks.count,
        "lag_max_ms": round(1000 * lags[-1], 1) if lags else None,
        "lag_p99_ms": round(1000 * lags[int(len(lags) * 0.99)], 1) if lags else None,
        "rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunked", type=int, default=20000)
    ap.add_argument("--chunks-per-file", type=int, default=10)
    ap.add_argument("--blobs", type=int, default=50000)
    ap.add_argument("--orphans", type=int, default=1000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tgw-check-", dir=args.dir))
    try:
        t0 = time.monotonic()
        files = build(folder, args.chunked, args.chunks_per_file, args.blobs, args.orphans)
        built = time.monotonic() - t0
        os.system("sync")
        with open("/proc/sys/vm/drop_caches", "w") as f:  # a cold walk, as after a reboot
            f.write("3\n")
        out: dict[str, Any] = {}

        def run() -> Deferred[None]:
            d = Deferred.fromCoroutine(measure(folder))
            d.addCallback(out.update)
            d.addBoth(lambda r: (reactor.stop(), r)[1])
            return d

        reactor.callWhenRunning(run)
        reactor.run()
        print(json.dumps({"files_on_disk": files, "build_seconds": round(built, 1), **out}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
