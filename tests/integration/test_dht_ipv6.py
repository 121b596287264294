"""BEP 32 on the real reactor: IPv6 nodes on ::1 (V6ONLY sockets) exchange ``nodes6``, and a
dual-stack gateway (``host`` + ``host6``) runs one node per family on the same port."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from harness.gateway import case_data_dir
from tgateway.config import DhtConfig
from tgateway.dht.service import DhtService, build_dht

pytestmark = pytest.mark.integration


async def until(pred: object, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if pred():  # type: ignore[operator]
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("condition not met in time")


class DhtIpv6Tests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.tmp = Path(case_data_dir(self))

    def start(self, name: str, **kw: object) -> DhtService:
        """A DHT service started on the real reactor, stopped when the test ends."""
        kw.setdefault("port", 0)
        kw.setdefault("bootstrap_nodes", ())
        svc = build_dht(DhtConfig(**kw), str(self.tmp / name), reactor, random.Random(), 6881)  # type: ignore[arg-type]
        svc.startService()
        self.addCleanup(svc.stopService)
        return svc

    async def test_ipv6_nodes_find_each_others_peers(self) -> None:
        gateway = self.start("gw", host="127.0.0.1", host6="::1")
        self.assertEqual([f.node.ipv6 for f in gateway.families], [False, True])
        _, port6 = gateway.ports
        boot6 = f"[::1]:{port6}"
        a = self.start("a", host="::1", bootstrap_nodes=(boot6,))
        b = self.start("b", host="::1", bootstrap_nodes=(boot6,))
        self.assertTrue(a.families[0].node.ipv6 and b.families[0].node.ipv6)
        gw6 = gateway.families[1].node
        await until(lambda: len(gw6.table) >= 2 and len(a.families[0].node.table) >= 1)
        # The IPv4 node never sees IPv6 nodes: one table per family.
        self.assertEqual(len(gateway.families[0].node.table), 0)
        self.assertTrue(all(":" in e.ip for e in gw6.table.entries()))
        info_hash = os.urandom(20)
        a.announce(info_hash)
        await until(lambda: info_hash in gw6.store)
        peers = await b.get_peers(info_hash)
        self.assertIn(("::1", 6881), peers)
        # The dual-stack gateway merges both families' lookups.
        self.assertIn(("::1", 6881), await gateway.get_peers(info_hash))
        status = gateway.status()
        self.assertEqual([f["family"] for f in status["families"]], ["ipv4", "ipv6"])
        self.assertEqual(status["families"][1]["malformed"], 0)
