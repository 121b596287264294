"""``kill -9`` of the real ``twistd tgateway`` while an upload is being placed or a file deleted:
after the next start, no blob or chunk is left that no row references, and no row lacks its
bytes; a chunk another file shares is never removed.

The kill lands at a named step of the content store: the child runs with
``TGATEWAY_TEST_CRASH_AT=<step>`` and kills itself with SIGKILL there (see
``tgateway/storage/crashpoints.py``). The database and the folders are then read by this test
itself (sqlite3 and a walk), not through the store.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.twistd import GatewayProcess, gateway_config, wait_until
from tgateway.nostr.event import EventTemplate, public_key_hex, sign

pytestmark = pytest.mark.integration

CHUNK = 65536
KEY = bytes.fromhex("5e" * 32)
OWNER = public_key_hex(KEY)


def config(data: Path) -> dict[str, Any]:
    return gateway_config(data, storage={"chunk_size": CHUNK, "blob_threshold": 16 * CHUNK})


def nip98(url: str, method: str, body: bytes | None = None) -> str:
    tags: tuple[tuple[str, ...], ...] = (("u", url), ("method", method))
    if body is not None:  # also keeps two uploads in one second from looking like a replay
        tags += (("payload", hashlib.sha256(body).hexdigest()),)
    event = sign(EventTemplate(kind=27235, created_at=int(time.time()), tags=tags), KEY)
    return "Nostr " + base64.b64encode(json.dumps(event.to_json()).encode()).decode()


def request(method: str, url: str, data: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
            return r.status, json.loads(body) if r.headers.get_content_type() == "application/json" else body
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def upload(gw: GatewayProcess, data: bytes, name: str = "f.bin") -> tuple[int, Any]:
    url = gw.url("/api/upload")
    return request("PUT", url, data, {"X-Filename": name, "Authorization": nip98(url, "PUT", data),
                                      "Content-Type": "application/octet-stream"})


def delete(gw: GatewayProcess, sha256: str) -> tuple[int, Any]:
    url = gw.url(f"/api/users/me/files/{sha256}")
    return request("DELETE", url, headers={"Authorization": nip98(url, "DELETE")})


def download_sha256(gw: GatewayProcess, sha256: str) -> str:
    code, body = request("GET", gw.url(f"/api/download/{sha256}"))
    assert code == 200
    return hashlib.sha256(body).hexdigest()


def run_gateway(work: Path, data: Path, crash_at: str | None) -> GatewayProcess:
    """A fresh child (its own log) on the same data folder; ``crash_at`` arms a crash point."""
    return GatewayProcess(config(data), work, env={"TGATEWAY_TEST_CRASH_AT": crash_at}).start()


def check_finished(gw: GatewayProcess) -> None:
    """Wait for the start-up storage check (it runs in the background) to log its report."""
    assert wait_until(lambda: "storage check finished" in gw.log(), 60), gw.log()


def killed_at_crash_point(gw: GatewayProcess) -> None:
    assert gw.proc is not None
    gw.proc.wait(30)
    assert gw.proc.returncode == -signal.SIGKILL, gw.log()


def inventory(data: Path) -> tuple[set[str], set[str], set[str]]:
    """(blob and chunk names on disk, names rows reference, file rows), read by the test itself."""
    on_disk = set()
    for root in (data / "blobs", data / "chunks"):
        for p in root.rglob("*"):
            if p.is_file() and ".tmp" not in p.relative_to(root).parts:
                on_disk.add(p.name)
    conn = sqlite3.connect(data / "metadata.db")
    try:
        refs = {r[0] for r in conn.execute("SELECT chunk_sha256 FROM file_chunks")}
        refs |= {r[0] for r in conn.execute("SELECT sha256 FROM files WHERE storage = 'blob'")}
        files = {r[0] for r in conn.execute("SELECT sha256 FROM files")}
    finally:
        conn.close()
    return on_disk, refs, files


def assert_consistent(data: Path) -> set[str]:
    on_disk, refs, files = inventory(data)
    assert refs <= on_disk, f"rows without bytes: {sorted(refs - on_disk)[:5]}"
    assert on_disk <= refs, f"bytes without a row: {len(on_disk - refs)}"
    return files


@pytest.mark.parametrize("step, size", [
    ("place:some", 32 * CHUNK),  # half of the chunks renamed into place
    ("place:all", 32 * CHUNK),  # every chunk placed and fsynced, no row
    ("place:all", 5 * CHUNK),  # a blob placed and fsynced, no row
], ids=["chunked-half-placed", "chunked-placed", "blob-placed"])
def test_kill_during_placement_leaves_nothing_after_restart(
    tmp_path: Path, step: str, size: int
) -> None:
    data = tmp_path / "data"
    src = os.urandom(size)
    sha = hashlib.sha256(src).hexdigest()
    gw = run_gateway(tmp_path / "run1", data, step)
    try:
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            upload(gw, src)
        killed_at_crash_point(gw)
    finally:
        gw.kill()
    on_disk, refs, files = inventory(data)
    assert files == set() and refs == set()
    assert on_disk, "the crash left the placed bytes behind"  # what the start check must remove

    gw = run_gateway(tmp_path / "run2", data, None)
    try:
        check_finished(gw)
        assert request("GET", gw.url(f"/api/files/{sha}"))[0] == 404  # nothing partial visible
    finally:
        gw.stop()
    assert assert_consistent(data) == set()
    assert inventory(data)[0] == set()

    gw = run_gateway(tmp_path / "run3", data, None)  # the same bytes store fine
    try:
        check_finished(gw)
        code, meta = upload(gw, src)
        assert code == 201, meta
        assert download_sha256(gw, sha) == sha
    finally:
        gw.stop()
    assert assert_consistent(data) == {sha}


@pytest.mark.parametrize("step", ["delete:row", "delete:some"])
def test_kill_during_a_delete_leaves_nothing_and_keeps_shared_chunks(
    tmp_path: Path, step: str
) -> None:
    data = tmp_path / "data"
    shared = os.urandom(16 * CHUNK)
    doomed, kept = shared + os.urandom(16 * CHUNK), shared + os.urandom(16 * CHUNK)
    doomed_sha, kept_sha = hashlib.sha256(doomed).hexdigest(), hashlib.sha256(kept).hexdigest()
    gw = run_gateway(tmp_path / "run1", data, None)
    try:
        check_finished(gw)
        assert upload(gw, doomed, "doomed.bin")[0] == 201
        assert upload(gw, kept, "kept.bin")[0] == 201
    finally:
        gw.stop()
    assert assert_consistent(data) == {doomed_sha, kept_sha}
    before = inventory(data)[0]
    assert len(before) == 48  # 16 shared + 16 + 16

    gw = run_gateway(tmp_path / "run2", data, step)
    try:
        check_finished(gw)
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            delete(gw, doomed_sha)
        killed_at_crash_point(gw)
    finally:
        gw.kill()
    on_disk, refs, files = inventory(data)
    assert files == {kept_sha}  # the row went first
    assert refs <= on_disk  # never a row without bytes
    left = on_disk - refs
    assert len(left) == (16 if step == "delete:row" else 8), len(left)

    gw = run_gateway(tmp_path / "run3", data, None)
    try:
        check_finished(gw)
        assert download_sha256(gw, kept_sha) == kept_sha  # the shared chunks stayed
        assert request("GET", gw.url(f"/api/files/{doomed_sha}"))[0] == 404
    finally:
        gw.stop()
    assert assert_consistent(data) == {kept_sha}
    final = inventory(data)[0]
    assert len(final) == 32 and final <= before and not final & left
