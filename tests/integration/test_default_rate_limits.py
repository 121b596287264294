"""The shipped rate limits (``configs/config.yaml``) against real clients on one address.

- libtorrent downloads a 1 GB file from the gateway's webseed alone (BEP 19, no peer) at full
  loopback speed: no request is answered 429 (none in the access log, no ``url_seed_alert``);
  the request rate it made is printed and checked against the download class it counts in;
- a Nostr feed: 80 blobs fetched from the Blossom port within a second (``HEAD`` then ``GET``
  each, 160 requests): none is answered 429;
- what is expensive stays limited: Blossom uploads beyond ``blossom_server.rate_limit`` from one
  address are answered 429 with ``Retry-After``.

Every limit here is the one in ``configs/config.yaml``: nothing is raised for the test.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import ports, procs
from harness.twistd import REPO_ROOT, GatewayProcess, gateway_config, random_file
from tests.blossom import tokens

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 1000 * 1000 * 1000
LT_CLIENT = Path(__file__).resolve().parent.parent / "peer" / "lt_client.py"
SHIPPED = yaml.safe_load((REPO_ROOT / "configs" / "config.yaml").read_text())


def shipped_limits(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the rate limits of the shipped configuration."""
    cfg["rate_limiting"] = SHIPPED["rate_limiting"]
    cfg["blossom_server"] = {**cfg.get("blossom_server", {}),
                             "rate_limit": SHIPPED["blossom_server"]["rate_limit"]}
    return cfg


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("limits")
    cfg = shipped_limits(gateway_config(
        work / "data", mode="unified",
        blossom_server={"port": ports.free_tcp_port(), "host": "127.0.0.1"},
        peer={"enabled": False}, tracker={"enabled": False},
        nostr={"auto_publish": False},
    ))
    with GatewayProcess(cfg, work / "gw") as gw:
        gw.blossom = f"http://127.0.0.1:{cfg['blossom_server']['port']}"
        yield gw, work


def access_lines(gw: GatewayProcess, path_prefix: str) -> list[tuple[str, int]]:
    """(path, status) of each request to ``path_prefix`` in the access log."""
    out = []
    for m in re.finditer(r'"(?:GET|HEAD|PUT) (\S+) HTTP/1\.[01]" (\d{3}) ', gw.log()):
        if m.group(1).startswith(path_prefix):
            out.append((m.group(1), int(m.group(2))))
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def test_a_1gb_libtorrent_webseed_download_is_never_answered_429(gateway: Any) -> None:
    gw, work = gateway
    src = random_file(work / "big.bin", SIZE)
    digest = _sha256(src)
    with open(src, "rb") as body:
        req = urllib.request.Request(gw.url("/api/upload"), data=body, method="PUT",
                                     headers={"X-Filename": "big.bin",
                                              "Content-Length": str(SIZE)})
        with urllib.request.urlopen(req, timeout=600) as r:
            info = json.load(r)
    src.unlink()
    assert info["sha256"] == digest
    with urllib.request.urlopen(gw.url(f"/api/torrent/{digest}")) as r:
        torrent = work / "big.torrent"
        torrent.write_bytes(r.read())
    out = work / "lt"
    out.mkdir()
    report = procs.run_libtorrent(LT_CLIENT, "webseed", str(torrent), str(out), "300",
                                        timeout=360).json()
    assert report["ok"], report
    assert report["url_seed_errors"] == [], report
    assert _sha256(out / "big.bin") == digest
    (out / "big.bin").unlink()
    requests = access_lines(gw, f"/api/webseed/{info['info_hash']}/")
    statuses = {s for _, s in requests}
    assert statuses <= {200, 206}, statuses  # never 429
    rate = len(requests) / report["seconds"]
    download = SHIPPED["rate_limiting"]["download"]
    print(f"libtorrent: {SIZE / report['seconds'] / 1e6:.0f} MB/s, {len(requests)} requests "
          f"in {report['seconds']:.1f} s = {rate:.1f}/s; download class "
          f"{download['requests_per_second']}/s, burst {download['burst_size']}")
    # the whole download fits in the bucket's burst plus its refill over the download's time
    assert len(requests) <= download["burst_size"] + download["requests_per_second"] * \
        report["seconds"]


def blossom_upload(gw: GatewayProcess, data: bytes) -> tuple[int, str | None]:
    """PUT /upload with a token for ``data``: (status, Retry-After)."""
    req = urllib.request.Request(f"{gw.blossom}/upload", data=data, method="PUT", headers={
        "Authorization": tokens.header("upload", hashes=(hashlib.sha256(data).hexdigest(),))})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, None
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Retry-After")


def test_a_feed_of_40_blobs_loaded_twice_in_a_second_is_never_answered_429(gateway: Any) -> None:
    gw, work = gateway
    blobs = [f"feed image {i} ".encode() * 50 for i in range(40)]
    assert [blossom_upload(gw, b)[0] for b in blobs] == [201] * 40
    shas = [hashlib.sha256(b).hexdigest() for b in blobs] * 2  # two columns show them all

    def fetch(sha: str) -> tuple[int, int]:
        codes = []
        for method in ("HEAD", "GET"):
            try:
                with urllib.request.urlopen(urllib.request.Request(
                        f"{gw.blossom}/{sha}.txt", method=method)) as r:
                    r.read()
                    codes.append(r.status)
            except urllib.error.HTTPError as e:
                codes.append(e.code)
        return codes[0], codes[1]

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(fetch, shas))
    took = time.monotonic() - start
    print(f"{len(shas) * 2} Blossom reads in {took:.2f} s")
    assert took < 5, took
    assert set(codes) == {(200, 200)}, codes


def test_blossom_uploads_beyond_the_limit_are_answered_429(gateway: Any) -> None:
    gw, work = gateway
    limit = SHIPPED["blossom_server"]["rate_limit"]
    answers = [blossom_upload(gw, f"blob {i}".encode()) for i in range(limit["burst_size"] + 5)]
    codes = [code for code, _ in answers]
    assert 429 in codes, codes  # within one burst and a few more from one address
    first = codes.index(429)
    assert codes[:first] == [201] * first, codes
    assert all(int(retry) >= 1 for code, retry in answers if code == 429), answers
