"""Retention in the real ``twistd tgateway``: ``/api/admin/cleanup`` for admins only, its dry run
agreeing with the run, last access noted by a download and written by the run, and a ``kill -9`` in the
middle of a run (between the removal's durable commit and its last unlinks) leaving, after the
restart's storage check, no row without bytes and no bytes without a row; the file that was used
and shares chunks with removed ones is whole.

The gateway runs with ``cleanup_age: 6s`` and ``auto_cleanup: false`` (runs only when asked); the
kill is the store's crash point ``delete:some`` (``tgateway/storage/crashpoints.py``)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from harness.twistd import GatewayProcess, gateway_config
from tests.integration.test_storage_crash import (
    CHUNK,
    OWNER,
    assert_consistent,
    check_finished,
    download_sha256,
    killed_at_crash_point,
    nip98,
    request,
    upload,
)
from tgateway.nostr.event import EventTemplate, public_key_hex, sign

pytestmark = pytest.mark.integration

AGE = 6.0
OTHER = bytes.fromhex("7a" * 32)


def config(data: Path) -> dict[str, Any]:
    return gateway_config(
        data, storage={"chunk_size": CHUNK, "blob_threshold": 16 * CHUNK},
        admin={"pubkeys": [OWNER], "auto_cleanup": False, "cleanup_age": f"{int(AGE)}s"})


def start(work: Path, data: Path, crash_at: str | None) -> GatewayProcess:
    return GatewayProcess(config(data), work, env={"TGATEWAY_TEST_CRASH_AT": crash_at}).start()


def cleanup(gw: GatewayProcess, method: str, key: bytes | None = None) -> tuple[int, Any]:
    """The cleanup route with a NIP-98 header of the admin (or of ``key``)."""
    url = gw.url("/api/admin/cleanup")
    headers = {"Authorization": nip98(url, method)}
    if key is not None:
        event = sign(EventTemplate(kind=27235, created_at=int(time.time()),
                                   tags=(("u", url), ("method", method))), key)
        headers["Authorization"] = "Nostr " + base64.b64encode(
            json.dumps(event.to_json()).encode()).decode()
    return request(method, url, b"" if method == "POST" else None, headers)


def last_access(data: Path) -> dict[str, float | None]:
    conn = sqlite3.connect(data / "metadata.db")
    try:
        return dict(conn.execute("SELECT sha256, last_access FROM files").fetchall())
    finally:
        conn.close()


def test_a_kill_during_a_run_leaves_a_consistent_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    common = os.urandom(8 * CHUNK)
    kept = common + os.urandom(24 * CHUNK)
    expired = [common + os.urandom(24 * CHUNK) for _ in range(3)] + [os.urandom(3 * CHUNK)]
    kept_sha = hashlib.sha256(kept).hexdigest()
    expired_shas = sorted(hashlib.sha256(b).hexdigest() for b in expired)

    gw = start(tmp_path / "run1", data, "delete:some")
    try:
        for i, body in enumerate([kept, *expired]):
            assert upload(gw, body, f"f{i}.bin")[0] in (200, 201)
        # admins only
        code, body = request("GET", gw.url("/api/admin/cleanup"))
        assert (code, body["error"]) == (401, "auth_required")
        code, body = cleanup(gw, "GET", key=OTHER)
        assert (code, body["error"]) == (403, "not_admin")
        assert public_key_hex(OTHER) != OWNER

        time.sleep(AGE + 0.5)
        # the kept file is downloaded, then fetched as a webseed piece: both are reads
        assert download_sha256(gw, kept_sha) == kept_sha
        code, dry = cleanup(gw, "GET")
        assert code == 200 and dry["dry_run"], dry
        assert sorted(i["sha256"] for i in dry["files"]["items"]) == expired_shas
        assert dry["files"]["by_reason"]["cleanup_age"] == 4

        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            cleanup(gw, "POST")  # dies between the rows' commit and the last unlinks
        killed_at_crash_point(gw)
    finally:
        gw.kill()

    gw = start(tmp_path / "run2", data, None)
    try:
        check_finished(gw)
        files = assert_consistent(data)
        assert files == {kept_sha}, "the run's removal was committed before the kill"
        assert "removed 0 unreferenced blobs, 0 unreferenced chunks" not in gw.log(), \
            "the kill left the unlinks half done: the start-up check removes the rest"
        assert download_sha256(gw, kept_sha) == kept_sha  # its shared chunks stayed
        code, report = cleanup(gw, "POST")
        assert code == 200 and not report["dry_run"] and report["complete"], report
        assert report["files"]["count"] == 0
        assert report["storage"]["orphan_chunks"]["count"] == 0
        assert report["storage"]["missing_files"] == 0
    finally:
        gw.stop()
    assert last_access(data)[kept_sha] is not None  # the run wrote the reads it had noted
    assert_consistent(data)
