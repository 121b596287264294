#!/usr/bin/env python3
"""Retention's costs: the reactor's lag during a run over 100,000 files, and what noting last
access costs webseed.

    PYTHONPATH=. .venv/bin/python bench/retention/run.py lag [--files 100000] [--expired 0.5]
    PYTHONPATH=. .venv/bin/python bench/retention/run.py webseed [--seconds 5] [--rounds 6]

``lag``: builds a store (rows written straight into the database, every blob and chunk an empty
file at its content address; a fifth of the files chunked, 4 chunks each, one of them shared with
the next file), ``--expired`` of them idle for 100 days. Then, on the real reactor with the
threaded store and database, a dry run and a real run of :class:`Retention` (files, users, the
storage check, the database's upkeep) while a 10 ms LoopingCall measures how late each tick
fires. One JSON line: seconds, files removed, lag max and p99 of each run.

``webseed``: the real gateway (``tap.makeService``, gateway-only, in this process) serves a
stored 4 MiB file; 16 concurrent persistent HTTP/1.1 clients fetch 16 KiB ranges of
``/api/webseed/<info_hash>`` (small ranges: the per-request cost is what tracking adds to) for
``--seconds`` per round, rounds alternating access tracking off (the chunk reader's ``on_read``
unset: the code before retention) and on. One JSON line: requests a second of each round, the
medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.storage.check import name, touch  # noqa: E402
from tgateway.config import StorageConfig  # noqa: E402
from tgateway.retention.core import Rules  # noqa: E402
from tgateway.retention.runner import Retention  # noqa: E402
from tgateway.storage.db import Database  # noqa: E402
from tgateway.storage.disk import DiskLayout  # noqa: E402
from tgateway.storage.store import LocalContentStore  # noqa: E402

DAY = 86400.0


# --------------------------------------------------------------------------- lag


def build(folder: Path, files: int, expired: float, now: float) -> None:
    layout = DiskLayout(folder / "blobs", folder / "chunks")
    layout.prepare()
    db = Database(None, str(folder / "metadata.db"))  # type: ignore[arg-type]
    db.open()
    old = int(files * expired)

    def fill(conn: Any) -> None:
        for i in range(files):
            created = now - 100 * DAY if i % files < old else now - DAY
            chunked = i % 5 == 0
            sha = name("file", i)
            conn.execute(
                "INSERT INTO files (sha256, size, name, mime, storage, piece_length, info_hash,"
                " info, created_at) VALUES (?, 1000, 'f', 'x/y', ?, 1, ?, x'00', ?)",
                (sha, "chunked" if chunked else "blob", name("ih", i)[:40], created))
            conn.execute("INSERT INTO file_owners (sha256, owner, name, created_at)"
                         " VALUES (?, ?, 'f', ?)", (sha, name("owner", i % 1000), created))
            if chunked:
                conn.executemany(
                    "INSERT INTO file_chunks (file_sha256, idx, chunk_sha256, offset, size)"
                    " VALUES (?, ?, ?, 0, 0)",
                    [(sha, k, name("chunk", i + 5 if k == 3 else i, k)) for k in range(4)])

    db.run_sync(fill)
    chunks = db.run_sync(lambda c: [r[0] for r in c.execute(
        "SELECT DISTINCT chunk_sha256 FROM file_chunks")])
    blobs = db.run_sync(lambda c: [r[0] for r in c.execute(
        "SELECT sha256 FROM files WHERE storage = 'blob'")])
    db.close()
    for c in chunks:
        touch(layout.chunk_path(c))
    for b in blobs:
        touch(layout.blob_path(b))


async def lag_runs(folder: Path, now: float) -> dict[str, Any]:
    db = Database(reactor, str(folder / "metadata.db"))
    db.open()
    store = LocalContentStore(reactor=reactor, db=db,
                              layout=DiskLayout(folder / "blobs", folder / "chunks"),
                              config=StorageConfig())
    store.start()
    retention = Retention(store=store, db=db, clock=reactor,
                          rules=Rules(90 * DAY, 365 * DAY, 180 * DAY))
    out: dict[str, Any] = {}
    for kind, dry in (("dry_run", True), ("run", False)):
        lags: list[float] = []
        last = [time.monotonic()]

        def tick(lags: list[float] = lags, last: list[float] = last) -> None:
            t = time.monotonic()
            lags.append(max(0.0, t - last[0] - 0.01))
            last[0] = t

        loop = task.LoopingCall(tick)
        loop.start(0.01, now=False)
        started = time.monotonic()
        report = await retention.run(dry_run=dry)
        seconds = time.monotonic() - started
        loop.stop()
        lags.sort()
        out[kind] = {
            "seconds": round(seconds, 1), "files": report.files.count,
            "orphans": (report.storage or {}).get("orphan_chunks", {}).get("count"),
            "lag_max_ms": round(1000 * lags[-1], 1) if lags else None,
            "lag_p99_ms": round(1000 * lags[int(len(lags) * 0.99)], 1) if lags else None,
            "lag_median_ms": round(1000 * lags[len(lags) // 2], 1) if lags else None,
        }
    store.stop()
    db.close()
    return out


# --------------------------------------------------------------------------- webseed


async def webseed_rounds(folder: Path, seconds: float, rounds: int) -> dict[str, Any]:
    from twisted.web.client import Agent, HTTPConnectionPool, readBody

    from harness.twistd import gateway_config
    from tgateway.config import parse_config
    from tgateway.tap import makeService

    cfg = gateway_config(folder)
    config = parse_config(cfg)
    top = makeService({"config": config}, reactor)
    top.startService()
    store = top.gateway.store
    data = os.urandom(4 << 20)
    ingest = store.begin_upload(size_hint=len(data), max_size=1 << 30)
    ingest.write(data)
    from tgateway.storage.model import UploadContext

    f = (await store.commit(ingest, UploadContext(name="w.bin"))).file
    url = f"http://127.0.0.1:{config.gateway.port}/api/webseed/{f.info_hash}".encode()
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 16
    agent = Agent(reactor, pool=pool)
    reader = store.reader
    touch_fn = reader._on_read

    async def client(deadline: float, counter: list[int]) -> None:
        from twisted.web.http_headers import Headers

        rng = __import__("random").Random()
        while time.monotonic() < deadline:
            start = rng.randrange(0, len(data) - 16384)
            resp = await agent.request(b"GET", url, Headers(
                {b"range": [f"bytes={start}-{start + 16383}".encode()]}))
            body = await readBody(resp)
            assert resp.code == 206 and len(body) == 16384, resp.code
            counter[0] += 1

    results: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(rounds):
        mode = "off" if i % 2 == 0 else "on"
        reader._on_read = None if mode == "off" else touch_fn
        counter = [0]
        deadline = time.monotonic() + seconds
        await defer.gatherResults([defer.Deferred.fromCoroutine(client(deadline, counter))
                                   for _ in range(16)])
        results[mode].append(counter[0] / seconds)
    reader._on_read = touch_fn
    await pool.closeCachedConnections()
    await top.stopService()
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    return {"rounds_off": [round(r) for r in results["off"]],
            "rounds_on": [round(r) for r in results["on"]],
            "median_off": round(off), "median_on": round(on),
            "on_over_off": round(on / off, 3), "touches": store.access.touches}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["lag", "webseed"])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--expired", type=float, default=0.5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tgw-retention-", dir=args.dir))
    out: dict[str, Any] = {}
    try:
        now = time.time()
        if args.what == "lag":
            t0 = time.monotonic()
            build(folder, args.files, args.expired, now)
            out = {"files": args.files, "expired": int(args.files * args.expired),
                   "build_seconds": round(time.monotonic() - t0, 1)}
            coro = lag_runs(folder, now)
        else:
            coro = webseed_rounds(folder, args.seconds, args.rounds)

        def run() -> defer.Deferred[None]:
            d = defer.Deferred.fromCoroutine(coro)
            d.addCallback(out.update)
            d.addErrback(lambda f: (f.printTraceback(), None)[1])
            d.addBoth(lambda r: (reactor.stop(), r)[1])
            return d

        reactor.callWhenRunning(run)
        reactor.run()
        print(json.dumps(out))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
