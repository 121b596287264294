"""aria2c completes a download from a bare magnet link through the gateway's DHT and peer.

The whole plugin runs in twistd (DHT on loopback with no bootstrap nodes, BitTorrent peer, no
tracker, no webseed in the magnet). aria2c gets only ``magnet:?xt=urn:btih:...`` and the DHT entry
point: it finds the gateway's peer through the DHT, fetches the metadata over BEP 9 and the pieces
over the peer wire.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness.ports import free_tcp_port, free_udp_port
from harness.procs import run
from harness.tools import aria2c, curl
from harness.twistd import GatewayProcess, gateway_config, random_file

pytestmark = pytest.mark.integration


def test_aria2c_magnet_via_dht_only(tmp_path: Path) -> None:
    dht_port = free_udp_port()
    cfg = gateway_config(
        tmp_path / "data",
        mode="unified",
        blossom_server={"enabled": False},
        dht={"enabled": True, "host": "127.0.0.1", "port": dht_port, "bootstrap_nodes": []},
        peer={"port": free_tcp_port(), "host": "127.0.0.1"},
    )
    with GatewayProcess(cfg, tmp_path / "gw") as gw:
        src = random_file(tmp_path / "file.bin", 5_000_000)
        meta = json.loads(run([curl(), "-sS", "--fail", "-T", str(src), "-H", "X-Filename: file.bin",
                               gw.url("/api/upload")]).stdout)
        dht_file = tmp_path / "dht.dat"
        dht_file.write_bytes(b"")
        out = tmp_path / "dl"
        run([aria2c(), "--enable-dht=true", f"--dht-file-path={dht_file}",
             f"--dht-entry-point=127.0.0.1:{dht_port}", f"--dht-listen-port={free_udp_port()}",
             f"--listen-port={free_tcp_port()}", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
             "--seed-time=0", "--bt-stop-timeout=120", "--summary-interval=0", "--console-log-level=warn",
             "--file-allocation=none", f"--dir={out}", f"magnet:?xt=urn:btih:{meta['info_hash']}"],
            timeout=180)
        got = out / "file.bin"
        assert hashlib.sha256(got.read_bytes()).hexdigest() == meta["sha256"], gw.log()[-3000:]
        status = json.loads(run([curl(), "-sS", gw.url("/api/dht/status")]).stdout)
        assert status
