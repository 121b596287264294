"""Smoke tests: every real client the integration tests use is installed and works here.

A failure here names the missing client and the install command (scripts/install-test-deps);
see harness/.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from harness import netns, ports, procs, servers, tools

pytestmark = pytest.mark.integration

NPM_PINS = {
    "bittorrent-tracker": "11.2.3",
    "bittorrent-dht": "11.0.12",
    "webtorrent": "2.8.5",
    "create-torrent": "6.1.3",
    "parse-torrent": "11.0.24",
    "nostr-tools": "2.25.2",
    "blossom-client-sdk": "5.1.0",
}


def test_node_loads_every_npm_client_and_webtorrent_starts_offline() -> None:
    result = procs.run_node_json("smoke_packages.mjs", timeout=60)
    assert result["ok"] is True
    assert result["webtorrent"] == "2.8.5"
    for name in ("ws", "webrtc-polyfill", "nostr-tools/relay", "bittorrent-tracker/server"):
        assert result["loaded"][name] > 0, name
    for name in NPM_PINS:
        assert result["loaded"][name] > 0, name
    modules = tools.node_modules()
    for name, version in NPM_PINS.items():
        manifest = json.loads((modules / name / "package.json").read_text())
        assert manifest["version"] == version, name


def test_libtorrent_imports_in_debian_python() -> None:
    python = tools.libtorrent_python()
    result = procs.run(
        [python, "-c", "import libtorrent as lt; print(lt.__version__)"],
        env=tools.debian_python_env(),
    )
    assert re.match(r"2\.0\.\d+", result.stdout.strip()), result.stdout


def test_aria2c_runs() -> None:
    result = procs.run([tools.aria2c(), "--version"])
    assert result.stdout.startswith("aria2 version 1."), result.stdout[:200]


def test_ffprobe_and_ffmpeg_run() -> None:
    assert "ffprobe version" in procs.run([tools.ffprobe(), "-version"]).stdout
    encoders = procs.run([tools.ffmpeg(), "-hide_banner", "-encoders"]).stdout
    assert "libx264" in encoders and "aac" in encoders


@pytest.mark.parametrize(
    ("finder", "argv", "expect"),
    [
        ("curl", ["--version"], "curl "),
        ("nginx", ["-v"], "nginx version"),
        ("wrk", ["--version"], "wrk "),
        ("tor", ["--version"], "Tor version"),
    ],
)
def test_other_clients_run(finder: str, argv: list[str], expect: str) -> None:
    exe = getattr(tools, finder)()
    result = procs.run([exe, *argv], check=False)
    assert expect in result.stdout + result.stderr


def test_opentracker_serves_whitelisted_torrents_on_loopback(tmp_path: Path) -> None:
    info_hash = "0123456789abcdef0123456789abcdef01234567"
    escaped = "".join(f"%{info_hash[i : i + 2]}" for i in range(0, 40, 2))
    query = (
        f"?info_hash={escaped}&peer_id=-TG0001-abcdefghijkl"
        "&port=6881&uploaded=0&downloaded=0&left=0&compact=1&event=started"
    )
    tracker = servers.start_opentracker(tmp_path / "opentracker", [info_hash])
    try:
        assert tracker.udp_announce == f"udp://127.0.0.1:{tracker.port}/announce"
        for _ in range(40):  # it reads the whitelist in a thread, just after it starts listening
            reply = procs.run([tools.curl(), "-s", tracker.http_announce + query])
            if "8:intervali" in reply.stdout:
                break
            time.sleep(0.05)
    finally:
        tracker.stop()
    assert reply.stdout.startswith("d8:complete"), reply.stdout[:300]


def test_nostr_relay_round_trip_with_nostr_tools(nostr_relay: str) -> None:
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", nostr_relay)
    result = procs.run_node_json("nostr_relay_roundtrip.mjs", nostr_relay, timeout=60)
    assert result["verified"] is True, result
    assert [e["id"] for e in result["received"]] == [result["event"]["id"]]
    assert result["received"][0]["content"] == "hello from tgateway smoke test"


def test_free_ports_and_wait_for_tcp() -> None:
    tcp = ports.free_tcp_port()
    udp = ports.free_udp_port()
    both = ports.free_tcp_udp_port()
    assert all(0 < p < 65536 for p in (tcp, udp, both))
    assert not ports.tcp_accepts("127.0.0.1", tcp)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        ports.wait_for_tcp("127.0.0.1", server.getsockname()[1], timeout=5)
    with pytest.raises(TimeoutError):
        ports.wait_for_tcp("127.0.0.1", tcp, timeout=0.3)


def test_missing_client_fails_naming_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tools.ALLOW_MISSING_ENV, raising=False)
    with pytest.raises(tools.MissingClient, match="scripts/install-test-deps"):
        tools.which("no-such-client-tgateway", "no-such-package")


def test_missing_client_skips_only_when_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    import unittest

    monkeypatch.setenv(tools.ALLOW_MISSING_ENV, "1")
    with pytest.raises(unittest.SkipTest, match="no-such-client-tgateway.*install-test-deps"):
        tools.which("no-such-client-tgateway")


# The non-blocking helpers, on the real reactor. pytest-twisted style, not a trial TestCase:
# with pytest-twisted loaded, a trial TestCase that spins the reactor fails (DirtyReactor) once
# any plain test function has run before it in the session.


@pytest_twisted.inlineCallbacks  # type: ignore[untyped-decorator]
def test_run_node_json_deferred() -> Any:
    result = yield procs.run_node_json_deferred(reactor, "smoke_packages.mjs", timeout=60)
    assert result["webtorrent"] == "2.8.5"


@pytest_twisted.inlineCallbacks  # type: ignore[untyped-decorator]
def test_run_deferred_kills_on_timeout() -> Any:
    argv = [tools.node(), "-e", "setTimeout(() => {}, 60000)"]
    with pytest.raises(tools.ClientFailed, match="timed out after 0.5s"):
        yield procs.run_deferred(reactor, argv, timeout=0.5)


@pytest_twisted.inlineCallbacks  # type: ignore[untyped-decorator]
def test_client_process_json_deferred() -> Any:
    script = "setTimeout(() => console.log(JSON.stringify({ ready: true, port: 1 })), 100);"
    script += "setTimeout(() => {}, 60000)"
    proc = procs.ClientProcess([tools.node(), "-e", script])
    try:
        obj = yield proc.json_deferred(reactor, timeout=10, key="ready")
    finally:
        proc.stop()
    assert obj == {"ready": True, "port": 1}
    assert proc.poll() is not None


@pytest.mark.parametrize(
    ("finder", "expect"),
    [
        ("qbittorrent_nox", r"qBittorrent v4\.\d+"),
        ("transmission_daemon", r"transmission-daemon 3\.\d+"),
        ("deluged", r"deluged 2\.\d+"),
        ("deluge_console", r"deluge-console 2\.\d+"),
        ("chromium", r"Chromium \d+\."),
    ],
)
def test_torrent_daemons_and_chromium_run(finder: str, expect: str, tmp_path: Path) -> None:
    exe = getattr(tools, finder)()
    # HOME and the XDG folders in tmp_path: qBittorrent and Deluge write their config even for
    # --version.
    result = procs.run([exe, "--version"], check=False, timeout=60,
                             env=tools.private_home_env(tmp_path))
    assert re.search(expect, result.stdout + result.stderr), result


def test_playwright_drives_debian_chromium() -> None:
    with tools.chromium_browser() as browser:
        assert browser.version.split(".")[0].isdigit()
        page = browser.new_page()
        page.set_content("<p id=x>tgateway</p>")
        assert page.evaluate("document.getElementById('x').textContent") == "tgateway"
        assert page.evaluate("typeof RTCPeerConnection") == "function"


def test_network_namespace_has_its_own_addresses() -> None:
    ns = netns.NetworkNamespace(["10.99.0.1", "10.99.0.2"])
    try:
        with ns.inside():
            with socket.socket() as server:
                server.bind(("10.99.0.1", 0))
                server.listen()
                port = server.getsockname()[1]
                with socket.socket() as client:
                    client.bind(("10.99.0.2", 0))
                    client.connect(("10.99.0.1", port))
                # A child process started inside is in the namespace too.
                out = procs.run([netns.ip_command(), "-brief", "address"]).stdout
                assert "10.99.0.1/32" in out and "10.99.0.2/32" in out
        # Back outside: those addresses are not ours.
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("10.99.0.1", 0))
    finally:
        ns.close()
    assert ns.closed
    with pytest.raises(ValueError):
        with ns.inside():
            pass
