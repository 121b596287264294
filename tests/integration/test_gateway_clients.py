"""The real plugin (twistd) with real clients: curl, aria2c (webseed only), parse-torrent."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from harness.procs import run, run_node_json
from harness.tools import aria2c, curl
from harness.twistd import GatewayProcess, gateway_config, random_file, wait_until

pytestmark = pytest.mark.integration

MB = 1_000_000


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def curl_upload(gw: GatewayProcess, path: Path, *, raw: bool = False) -> dict:
    if raw:
        argv = [curl(), "-sS", "--fail-with-body", "-T", str(path), "-H", f"X-Filename: {path.name}",
                gw.url("/api/upload")]
    else:
        argv = [curl(), "-sS", "--fail-with-body", "-F", f"file=@{path}", "-F", "title=test",
                gw.url("/api/upload")]
    return json.loads(run(argv, timeout=300).stdout)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[GatewayProcess, Path, dict]:
    work = tmp_path_factory.mktemp("gw-big")
    gw = GatewayProcess(gateway_config(work / "data", tracker={"enabled": True, "udp_port": 0}), work).start()
    src = random_file(work / "big.bin", 300 * MB)
    meta = curl_upload(gw, src)
    yield gw, src, meta
    gw.stop()


def test_curl_round_trip_1mb(tmp_path: Path) -> None:
    with GatewayProcess(gateway_config(tmp_path / "data"), tmp_path) as gw:
        src = random_file(tmp_path / "one.bin", 1 * MB)
        for raw in (False, True):
            meta = curl_upload(gw, src, raw=raw)
            assert meta["sha256"] == sha256_file(src) and meta["storage"] == "blob"
            out = tmp_path / "out.bin"
            run([curl(), "-sS", "--fail", "-o", str(out), meta["urls"]["download"]])
            assert out.read_bytes() == src.read_bytes()


def test_fetch_form_data_upload(tmp_path: Path) -> None:
    """A multipart body built by Node's fetch + FormData (undici), as a browser sends the web
    page's form: fields before the file, a UTF-8 file name, the part's own Content-Type."""
    with GatewayProcess(gateway_config(tmp_path / "data"), tmp_path) as gw:
        src = random_file(tmp_path / "f.bin", 3 * MB)
        out = run_node_json("form_upload.mjs", gw.url("/api/upload"), str(src), "résumé final.bin", "un titre")
        assert out["status"] == 201, out
        meta = out["body"]
        assert meta["sha256"] == sha256_file(src) and meta["size"] == 3 * MB
        assert meta["name"] == "résumé final.bin" and meta["title"] == "un titre"
        assert meta["mime_type"] == "application/x-test"


def test_curl_round_trip_300mb_chunked(big: tuple[GatewayProcess, Path, dict], tmp_path: Path) -> None:
    gw, src, meta = big
    assert meta["storage"] == "chunked" and meta["chunks"] == -(-300 * MB // (2 * 1024 * 1024))
    assert meta["sha256"] == sha256_file(src)
    out = tmp_path / "out.bin"
    run([curl(), "-sS", "--fail", "-o", str(out), meta["urls"]["download"]], timeout=300)
    assert sha256_file(out) == meta["sha256"]
    # A range across a chunk boundary, with curl.
    start = 2 * 1024 * 1024 - 100
    part_file = tmp_path / "part.bin"
    run([curl(), "-sS", "--fail", "-r", f"{start}-{start + 199}", "-o", str(part_file), meta["urls"]["download"]])
    part = part_file.read_bytes()
    with open(src, "rb") as f:
        f.seek(start)
        assert part == f.read(200)


def test_aria2c_webseed_only(big: tuple[GatewayProcess, Path, dict], tmp_path: Path) -> None:
    gw, src, meta = big
    torrent = tmp_path / "t.torrent"
    run([curl(), "-sS", "--fail", "-o", str(torrent), meta["urls"]["torrent"]])
    dl = tmp_path / "dl"
    run([aria2c(), "--enable-dht=false", "--enable-dht6=false", "--bt-exclude-tracker=*",
         "--enable-peer-exchange=false", "--bt-enable-lpd=false", "--seed-time=0",
         "--check-integrity=true", "--follow-torrent=mem", "--console-log-level=warn",
         "--summary-interval=0", "--file-allocation=none", "-d", str(dl), str(torrent)], timeout=600)
    got = dl / meta["name"]
    assert sha256_file(got) == meta["sha256"]


def test_parse_torrent_agrees_on_the_info_hash(big: tuple[GatewayProcess, Path, dict], tmp_path: Path) -> None:
    gw, src, meta = big
    torrent = tmp_path / "t.torrent"
    run([curl(), "-sS", "--fail", "-o", str(torrent), meta["urls"]["torrent"]])
    parsed = run_node_json("parse_torrent.mjs", str(torrent))
    assert parsed["infoHash"] == meta["info_hash"]
    assert parsed["length"] == 300 * MB and parsed["pieceLength"] == 2 * 1024 * 1024
    assert parsed["urlList"] == [gw.url(f"/api/webseed/{meta['info_hash']}/")]
    # the dedicated tracker port first (the fast one), then the gateway port's /announce
    assert parsed["announce"][:2] == [f"http://127.0.0.1:{gw.config['tracker']['http_port']}/announce",
                                      gw.url("/announce")]


def test_kill_mid_upload_records_nothing(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "data")
    gw = GatewayProcess(cfg, tmp_path).start()
    src = random_file(tmp_path / "slow.bin", 40 * MB)
    uploader = subprocess.Popen(
        [curl(), "-sS", "--limit-rate", "8M", "-T", str(src), gw.url("/api/upload")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    chunk_tmp = tmp_path / "data" / "chunks" / ".tmp"
    blob_tmp = tmp_path / "data" / "blobs" / ".tmp"
    assert wait_until(lambda: any(p.is_file() for p in list(chunk_tmp.rglob("*")) + list(blob_tmp.rglob("*"))), 20)
    gw.kill()
    uploader.wait(30)
    assert uploader.returncode != 0
    gw2 = GatewayProcess(cfg, tmp_path).start()
    try:
        health = json.loads(run([curl(), "-sS", gw2.url("/api/health")]).stdout)
        assert health["storage"]["files"] == 0
        assert list(chunk_tmp.iterdir()) == [] and list(blob_tmp.iterdir()) == []
        assert not [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]
        # ... and the same file uploads fine afterwards.
        meta = curl_upload(gw2, src, raw=True)
        assert meta["sha256"] == sha256_file(src)
    finally:
        gw2.stop()
