"""The gateway's DHT node on the real reactor, on loopback, used by bittorrent-dht (node) nodes.

Three bittorrent-dht 11 nodes bootstrap from the gateway only (nothing leaves 127.0.0.1): one
pings the gateway and finds the peer the gateway announced, another announces an info-hash and a
third finds that peer through the gateway; then the gateway finds it with its own lookup.

The whole plugin (``twistd tgateway``) with its DHT and peer on ``0.0.0.0``, as shipped, and no
other DHT node: a bittorrent-dht node bootstrapped from the gateway alone finds the gateway's peer
for a stored file, at the address the tracker lists it under (issue 16, point 7).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from harness import ports, procs, tools
from harness.gateway import case_data_dir
from harness.twistd import GatewayProcess, gateway_config, random_file
from tgateway.config import DhtConfig
from tgateway.dht.service import build_dht

pytestmark = pytest.mark.integration

PEER_PORT = 6881


class BittorrentDhtNodesTests(TestCase):
    timeout = 120

    async def test_bittorrent_dht_nodes(self) -> None:
        config = DhtConfig(host="127.0.0.1", port=0, bootstrap_nodes=())
        gateway = build_dht(config, os.path.join(case_data_dir(self), "dht"), reactor,
                            random.Random(), PEER_PORT)
        gateway.startService()
        self.addCleanup(gateway.stopService)
        port = gateway.ports[0]
        ours, theirs = os.urandom(20), os.urandom(20)
        gateway.announce(ours)
        proc = procs.ClientProcess.node(
            "dht_nodes.mjs", str(port), ours.hex(), theirs.hex(), "7777"
        )
        self.addCleanup(proc.stop)
        result = await proc.json_deferred(reactor, timeout=60)
        self.assertTrue(result["ok"], proc.describe())
        assert gateway.node_id is not None
        self.assertEqual(result["ping"], {"id": gateway.node_id.hex()})
        self.assertEqual(result["lookup_gateway"],
                         {"error": None, "peers": [f"127.0.0.1:{PEER_PORT}"]})
        self.assertIsNone(result["announce"])
        self.assertIn("127.0.0.1:7777", result["lookup_ours"]["peers"])
        # The JS nodes learnt about each other from the gateway's find_node answers.
        self.assertGreaterEqual(min(result["nodes"]), 2, result)
        # The gateway finds the peer they announced, and knows them as good nodes.
        peers = await gateway.get_peers(theirs)
        self.assertIn(("127.0.0.1", 7777), peers)
        status = gateway.status()
        self.assertGreaterEqual(status["routing_table_size"], 3)
        self.assertGreaterEqual(status["good_nodes"], 3)
        self.assertGreaterEqual(status["stored_torrents"], 2)
        self.assertEqual(status["families"][0]["malformed"], 0)
        self.assertEqual(status["families"][0]["errors_out"], 0)


class TwistdDhtTests(SynchronousTestCase):
    def test_a_node_bootstrapped_from_a_gateway_on_any_address_finds_its_peer(self) -> None:
        tmp = Path(case_data_dir(self))
        dht_port, peer_port = ports.free_udp_port(), ports.free_tcp_port()
        cfg = gateway_config(
            tmp / "data", mode="unified", blossom_server={"enabled": False},
            gateway={"port": ports.free_tcp_port(), "host": "0.0.0.0"},
            dht={"enabled": True, "host": "0.0.0.0", "port": dht_port, "bootstrap_nodes": []},
            peer={"port": peer_port, "host": "0.0.0.0"},
        )
        with GatewayProcess(cfg, tmp / "gw") as gw:
            src = random_file(tmp / "file.bin", 100_000)
            meta = json.loads(procs.run([tools.curl(), "-sS", "--fail", "-T", str(src),
                                         "-H", "X-Filename: file.bin", gw.url("/api/upload")]).stdout)
            with procs.ClientProcess.node("dht_nodes.mjs", str(dht_port), meta["info_hash"],
                                          os.urandom(20).hex(), "7777") as proc:
                result = proc.wait_for_json(timeout=60)
            self.assertTrue(result["ok"], proc.describe())
            # gateway.public_url is empty and the gateway listens on 0.0.0.0: the tracker lists the
            # peer at http://127.0.0.1:<port>'s host, and so does the DHT.
            self.assertEqual(result["lookup_gateway"],
                             {"error": None, "peers": [f"127.0.0.1:{peer_port}"]},
                             gw.log()[-3000:])
