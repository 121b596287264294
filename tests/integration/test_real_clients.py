"""Smoke tests: every real client the integration tests use is installed and works here.

A failure here names the missing client and the install command (scripts/install-test-deps);
see harness/.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import unittest
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from harness import netns, ports, procs, servers, tools
from harness.gateway import case_data_dir

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


class ClientsRunTests(SynchronousTestCase):
    def test_node_loads_every_npm_client_and_webtorrent_starts_offline(self) -> None:
        result = procs.run_node_json("smoke_packages.mjs", timeout=60)
        self.assertIs(result["ok"], True)
        self.assertEqual(result["webtorrent"], "2.8.5")
        for name in ("ws", "webrtc-polyfill", "nostr-tools/relay", "bittorrent-tracker/server"):
            self.assertGreater(result["loaded"][name], 0, name)
        for name in NPM_PINS:
            self.assertGreater(result["loaded"][name], 0, name)
        modules = tools.node_modules()
        for name, version in NPM_PINS.items():
            manifest = json.loads((modules / name / "package.json").read_text())
            self.assertEqual(manifest["version"], version, name)

    def test_libtorrent_imports_in_debian_python(self) -> None:
        python = tools.libtorrent_python()
        result = procs.run(
            [python, "-c", "import libtorrent as lt; print(lt.__version__)"],
            env=tools.debian_python_env(),
        )
        self.assertRegex(result.stdout.strip(), r"^2\.0\.\d+")

    def test_aria2c_runs(self) -> None:
        result = procs.run([tools.aria2c(), "--version"])
        self.assertTrue(result.stdout.startswith("aria2 version 1."), result.stdout[:200])

    def test_ffprobe_and_ffmpeg_run(self) -> None:
        self.assertIn("ffprobe version", procs.run([tools.ffprobe(), "-version"]).stdout)
        encoders = procs.run([tools.ffmpeg(), "-hide_banner", "-encoders"]).stdout
        self.assertIn("libx264", encoders)
        self.assertIn("aac", encoders)

    def other_client_runs(self, finder: str, argv: list[str], expect: str) -> None:
        exe = getattr(tools, finder)()
        result = procs.run([exe, *argv], check=False)
        self.assertIn(expect, result.stdout + result.stderr)

    def test_curl_runs(self) -> None:
        self.other_client_runs("curl", ["--version"], "curl ")

    def test_nginx_runs(self) -> None:
        self.other_client_runs("nginx", ["-v"], "nginx version")

    def test_wrk_runs(self) -> None:
        self.other_client_runs("wrk", ["--version"], "wrk ")

    def test_tor_runs(self) -> None:
        self.other_client_runs("tor", ["--version"], "Tor version")

    def test_opentracker_serves_whitelisted_torrents_on_loopback(self) -> None:
        info_hash = "0123456789abcdef0123456789abcdef01234567"
        escaped = "".join(f"%{info_hash[i : i + 2]}" for i in range(0, 40, 2))
        query = (
            f"?info_hash={escaped}&peer_id=-TG0001-abcdefghijkl"
            "&port=6881&uploaded=0&downloaded=0&left=0&compact=1&event=started"
        )
        tracker = servers.start_opentracker(case_data_dir(self), [info_hash])
        try:
            self.assertEqual(tracker.udp_announce, f"udp://127.0.0.1:{tracker.port}/announce")
            for _ in range(40):  # it reads the whitelist in a thread, just after it starts listening
                reply = procs.run([tools.curl(), "-s", tracker.http_announce + query])
                if "8:intervali" in reply.stdout:
                    break
                time.sleep(0.05)
        finally:
            tracker.stop()
        self.assertTrue(reply.stdout.startswith("d8:complete"), reply.stdout[:300])

    def test_nostr_relay_round_trip_with_nostr_tools(self) -> None:
        relay = servers.start_nostr_relay(case_data_dir(self))
        self.addCleanup(relay.stop)
        self.assertRegex(relay.url, r"^ws://127\.0\.0\.1:\d+$")
        result = procs.run_node_json("nostr_relay_roundtrip.mjs", relay.url, timeout=60)
        self.assertIs(result["verified"], True, result)
        self.assertEqual([e["id"] for e in result["received"]], [result["event"]["id"]])
        self.assertEqual(result["received"][0]["content"], "hello from tgateway smoke test")

    def daemon_runs(self, finder: str, expect: str) -> None:
        exe = getattr(tools, finder)()
        # HOME and the XDG folders in a folder of the test's: qBittorrent and Deluge write their
        # config even for --version.
        result = procs.run([exe, "--version"], check=False, timeout=60,
                           env=tools.private_home_env(Path(case_data_dir(self))))
        self.assertTrue(re.search(expect, result.stdout + result.stderr), result)

    def test_qbittorrent_nox_runs(self) -> None:
        self.daemon_runs("qbittorrent_nox", r"qBittorrent v4\.\d+")

    def test_transmission_daemon_runs(self) -> None:
        self.daemon_runs("transmission_daemon", r"transmission-daemon 3\.\d+")

    def test_deluged_runs(self) -> None:
        self.daemon_runs("deluged", r"deluged 2\.\d+")

    def test_deluge_console_runs(self) -> None:
        self.daemon_runs("deluge_console", r"deluge-console 2\.\d+")

    def test_chromium_runs(self) -> None:
        self.daemon_runs("chromium", r"Chromium \d+\.")

    def test_playwright_drives_debian_chromium(self) -> None:
        with tools.chromium_browser() as browser:
            self.assertTrue(browser.version.split(".")[0].isdigit(), browser.version)
            page = browser.new_page()
            page.set_content("<p id=x>tgateway</p>")
            self.assertEqual(page.evaluate("document.getElementById('x').textContent"), "tgateway")
            self.assertEqual(page.evaluate("typeof RTCPeerConnection"), "function")


class HarnessTests(SynchronousTestCase):
    def set_env(self, name: str, value: str | None) -> None:
        """Set (or, with None, remove) an environment variable until the test ends."""
        old = os.environ.get(name)

        def restore() -> None:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old

        self.addCleanup(restore)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def test_free_ports_and_wait_for_tcp(self) -> None:
        tcp = ports.free_tcp_port()
        udp = ports.free_udp_port()
        both = ports.free_tcp_udp_port()
        self.assertTrue(all(0 < p < 65536 for p in (tcp, udp, both)), (tcp, udp, both))
        self.assertFalse(ports.tcp_accepts("127.0.0.1", tcp))
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            ports.wait_for_tcp("127.0.0.1", server.getsockname()[1], timeout=5)
        with self.assertRaises(TimeoutError):
            ports.wait_for_tcp("127.0.0.1", tcp, timeout=0.3)

    def test_missing_client_fails_naming_the_install_command(self) -> None:
        self.set_env(tools.ALLOW_MISSING_ENV, None)
        with self.assertRaisesRegex(tools.MissingClient, "scripts/install-test-deps"):
            tools.which("no-such-client-tgateway", "no-such-package")

    def test_missing_client_skips_only_when_allowed(self) -> None:
        self.set_env(tools.ALLOW_MISSING_ENV, "1")
        with self.assertRaisesRegex(unittest.SkipTest, "no-such-client-tgateway.*install-test-deps"):
            tools.which("no-such-client-tgateway")

    def test_network_namespace_has_its_own_addresses(self) -> None:
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
                    self.assertIn("10.99.0.1/32", out)
                    self.assertIn("10.99.0.2/32", out)
            # Back outside: those addresses are not ours.
            with socket.socket() as other, self.assertRaises(OSError):
                other.bind(("10.99.0.1", 0))
        finally:
            ns.close()
        self.assertTrue(ns.closed)
        with self.assertRaises(ValueError):
            with ns.inside():
                pass


class ReactorHelperTests(TestCase):
    """The non-blocking helpers, on the real reactor."""

    timeout = 120

    async def test_run_node_json_deferred(self) -> None:
        result = await procs.run_node_json_deferred(reactor, "smoke_packages.mjs", timeout=60)
        self.assertEqual(result["webtorrent"], "2.8.5")

    async def test_run_deferred_kills_on_timeout(self) -> None:
        argv = [tools.node(), "-e", "setTimeout(() => {}, 60000)"]
        with self.assertRaisesRegex(tools.ClientFailed, "timed out after 0.5s"):
            await procs.run_deferred(reactor, argv, timeout=0.5)

    async def test_client_process_json_deferred(self) -> None:
        script = "setTimeout(() => console.log(JSON.stringify({ ready: true, port: 1 })), 100);"
        script += "setTimeout(() => {}, 60000)"
        proc = procs.ClientProcess([tools.node(), "-e", script])
        try:
            obj = await proc.json_deferred(reactor, timeout=10, key="ready")
        finally:
            proc.stop()
        self.assertEqual(obj, {"ready": True, "port": 1})
        self.assertIsNotNone(proc.poll())
