"""aria2c's DHT against the gateway's node on loopback (no tracker: a bare magnet link).

aria2c 1.36 with ``--dht-entry-point`` at the gateway pings it, finds the peer the gateway
announced for the magnet's info-hash, and announces itself (announce_peer with the gateway's
token), which the gateway stores. This test runs the DHT service alone; the complete download
through the DHT and the gateway's BitTorrent peer is ``test_dht_peer_download.py``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from harness import ports, procs, tools
from harness.gateway import case_data_dir
from tgateway.config import DhtConfig
from tgateway.dht.service import DhtService, build_dht

pytestmark = pytest.mark.integration


class Aria2DhtTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.tmp = Path(case_data_dir(self))
        # An unused port as the gateway's peer port: the peer itself is a later issue.
        peer_port = ports.free_tcp_port()
        config = DhtConfig(host="127.0.0.1", port=0, bootstrap_nodes=())
        self.gateway: DhtService = build_dht(
            config, str(self.tmp / "dht"), reactor, random.Random(), peer_port)
        self.gateway.startService()
        self.addCleanup(self.gateway.stopService)

    async def test_aria2c_uses_the_gateway_dht(self) -> None:
        gateway, tmp = self.gateway, self.tmp
        aria2c = tools.aria2c()
        info_hash = os.urandom(20)
        gateway.set_known_info_hashes([info_hash])
        gateway.announce(info_hash)
        listen = ports.free_tcp_port()
        dht_file = tmp / "dht.dat"
        dht_file.write_bytes(b"")
        log = tmp / "aria2.log"
        proc = procs.ClientProcess(
            [
                aria2c,
                "--enable-dht=true",
                f"--dht-file-path={dht_file}",
                f"--dht-entry-point=127.0.0.1:{gateway.ports[0]}",
                f"--dht-listen-port={ports.free_udp_port()}",
                f"--listen-port={listen}",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--bt-stop-timeout=60",
                "--summary-interval=0",
                f"--dir={tmp / 'dl'}",
                f"--log={log}",
                "--log-level=debug",
                f"magnet:?xt=urn:btih:{info_hash.hex()}",
            ],
            name="aria2c",
        )
        try:
            node = gateway.families[0].node
            theirs = ("127.0.0.1", listen)
            for _ in range(300):
                if theirs in await gateway.get_peers(info_hash):
                    break
                await task.deferLater(reactor, 0.1, lambda: None)
            else:
                self.fail("aria2c never announced to the gateway\n" + proc.describe())
            self.assertEqual(node.stats.malformed, 0)
            self.assertEqual(node.stats.errors_out, 0)
        finally:
            proc.stop()
        text = log.read_text(errors="replace")

        def logged(line: str) -> None:
            self.assertTrue(line in text, f"aria2c's debug log has no {line!r}")

        port = gateway.ports[0]
        logged("dht response ping TransactionID")
        logged(f"Remote:127.0.0.1({port})")
        logged("dht query ping")  # the gateway pinged aria2c back
        peer_port = gateway.announce_port
        logged(f"Adding peer 127.0.0.1:{peer_port}")  # the gateway's own peer, found via the DHT
