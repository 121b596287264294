"""The gateway as a Tor v3 onion service, with a real tor and no network (``DisableNetwork 1``).

The real ``twistd tgateway`` (a child process) launches tor, which answers ``ADD_ONION`` offline;
the address is in ``/api/health`` (``tor.onion``), a new torrent's ``url-list`` and a Blossom
descriptor, and stays the same after a restart (its key in the data folder). A tor that cannot
start is an error in the log and in health, and the gateway serves on. Attached to a tor it did
not launch, the gateway leaves that tor running when it stops.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness import tools
from harness.ports import free_tcp_port
from harness.twistd import GatewayProcess, gateway_config, wait_until
from tgateway import bencode

pytestmark = [pytest.mark.integration]

V3 = re.compile(r"[a-z2-7]{55}d\.onion\Z")


def get(url: str, data: bytes | None = None, method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def health(gw: GatewayProcess) -> dict[str, Any]:
    status, body = get(gw.url("/api/health"))
    assert status == 200
    return dict(json.loads(body))


def tor_state(gw: GatewayProcess, timeout: float = 30.0) -> dict[str, Any]:
    """The health route's ``tor`` once it has left ``starting``."""
    assert wait_until(lambda: health(gw)["tor"]["status"] != "starting", timeout), gw.log()
    return dict(health(gw)["tor"])


def config(data: Path, **tor: Any) -> dict[str, Any]:
    return gateway_config(
        data, mode="unified",
        blossom_server={"port": free_tcp_port(), "host": "127.0.0.1", "require_auth": []},
        tor={"enabled": True, "binary": tools.tor(), "torrc": ["DisableNetwork 1"], **tor},
    )


def launched_tor_pid(gw: GatewayProcess) -> int:
    m = re.search(r"tor: launched \S+ \(pid (\d+)\)", gw.log())
    assert m, gw.log()
    return int(m.group(1))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def upload(gw: GatewayProcess, body: bytes, name: str) -> dict[str, Any]:
    status, out = get(gw.url("/api/upload"), body, "POST", {"X-Filename": name})
    assert status in (200, 201), out
    return dict(json.loads(out))


def url_list(gw: GatewayProcess, sha256: str) -> list[str]:
    status, data = get(gw.url(f"/api/torrent/{sha256}"))
    assert status == 200
    return [u.decode() for u in bencode.decode(data)[b"url-list"]]


def test_the_onion_address_is_published_and_survives_a_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path / "data")
    gw = GatewayProcess(cfg, tmp_path / "run1")
    with gw:
        tor = tor_state(gw)
        assert tor["status"] == "ok", tor
        onion = tor["onion"]
        assert V3.match(onion), onion
        blossom_onion = f"http://{onion}:8082"
        assert tor["urls"] == {"gateway": f"http://{onion}", "blossom": blossom_onion}
        assert tor["tor"] == "launched"
        key = tmp_path / "data" / "tor" / "onion_service" / "hs_ed25519_secret_key"
        assert key.read_bytes().startswith(b"== ed25519v1-secret: type0 ==")
        assert key.stat().st_mode & 0o077 == 0

        # a new torrent: the public webseed, then the onion service's
        f = upload(gw, os.urandom(50_000), "first.bin")
        ih = f["info_hash"]
        assert url_list(gw, f["sha256"]) == [gw.url(f"/api/webseed/{ih}/"),
                                            f"http://{onion}/api/webseed/{ih}/"]
        assert f["onion_urls"]["download"] == f"http://{onion}/api/download/{f['sha256']}"

        # a Blossom descriptor names the blob on the onion service as an alternative
        blob = os.urandom(3000)
        sha = hashlib.sha256(blob).hexdigest()
        status, out = get(f"http://127.0.0.1:{cfg['blossom_server']['port']}/upload", blob, "PUT",
                          {"Content-Type": "application/octet-stream"})
        assert status in (200, 201), out
        descriptor = json.loads(out)
        assert descriptor["onion_url"] == f"{blossom_onion}/{sha}.bin"
        assert ["fallback", f"{blossom_onion}/{sha}.bin"] in descriptor["nip94"]
        tor_pid = launched_tor_pid(gw)
    # the gateway's tor goes with it
    assert wait_until(lambda: gone(tor_pid), 15), "the launched tor outlived the gateway"

    gw2 = GatewayProcess(cfg, tmp_path / "run2")
    with gw2:
        tor = tor_state(gw2)
        assert (tor["status"], tor["onion"]) == ("ok", onion)
        g = upload(gw2, os.urandom(40_000), "second.bin")
        assert f"http://{onion}/api/webseed/{g['info_hash']}/" in url_list(gw2, g["sha256"])
        # a file stored in the first run: its .torrent is made now, with the onion webseed too
        assert f"http://{onion}/api/webseed/{ih}/" in url_list(gw2, f["sha256"])
        assert "new onion service key" not in gw2.log()
        tor_pid = launched_tor_pid(gw2)
    assert wait_until(lambda: gone(tor_pid), 15)


def test_a_tor_that_does_not_start_is_an_error_and_the_gateway_serves_on(tmp_path: Path) -> None:
    cfg = config(tmp_path / "data", torrc=["DisableNetwork 1", "NoSuchTorOption 1"])
    with GatewayProcess(cfg, tmp_path / "run") as gw:
        tor = tor_state(gw)
        assert tor["status"] == "error" and tor["onion"] is None, tor
        assert "NoSuchTorOption" in tor["error"], tor
        assert "tor: no onion service" in gw.log() and "NoSuchTorOption" in gw.log()
        f = upload(gw, os.urandom(20_000), "plain.bin")
        assert "onion_urls" not in f
        assert url_list(gw, f["sha256"]) == [gw.url(f"/api/webseed/{f['info_hash']}/")]

    cfg = config(tmp_path / "data2", binary="/nonexistent/tor")
    with GatewayProcess(cfg, tmp_path / "run2") as gw:
        tor = tor_state(gw)
        assert tor["status"] == "error" and "tor not found" in tor["error"], tor


def test_attached_to_a_running_tor(tmp_path: Path) -> None:
    folder = tmp_path / "systor"
    folder.mkdir(mode=0o700)
    socket = folder / "control"
    proc = subprocess.Popen(
        [tools.tor(), "-f", "/dev/null", "--ignore-missing-torrc", "--DataDirectory", str(folder),
         "--ControlPort", f"unix:{socket}", "--CookieAuthentication", "1", "--SocksPort", "0",
         "--DisableNetwork", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_until(socket.exists, 20)
        cfg = gateway_config(tmp_path / "data",
                             tor={"enabled": True, "control_port": f"unix:{socket}"})
        with GatewayProcess(cfg, tmp_path / "run") as gw:
            tor = tor_state(gw)
            assert tor["status"] == "ok" and tor["tor"] == "attached", tor
            assert V3.match(tor["onion"])
            # gateway-only: the API alone is on the onion service
            assert tor["urls"] == {"gateway": f"http://{tor['onion']}"}
        time.sleep(0.5)
        assert proc.poll() is None, "the gateway stopped a tor it did not launch"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
