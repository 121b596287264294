"""tap.makeService builds the DHT service and wires it to the content store."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.config import parse_config
from tgateway.dht.service import DhtService
from tgateway.tap import makeService


class WiringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dht-wiring-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def config(self, **kw: object) -> object:
        d = self.dir
        data = {
            "data_dir": d,
            "dht": {"bootstrap_nodes": []},
            "storage": {
                "metadata_db": f"{d}/m.db",
                "blob_storage": f"{d}/b",
                "chunk_storage": f"{d}/c",
            },
            **kw,
        }
        return parse_config(data)

    def test_dht_only(self) -> None:
        top = makeService({"config": self.config(mode="dht-only")}, reactor=MemoryReactorClock())
        (dht,) = [s for s in top if isinstance(s, DhtService)]
        self.assertIs(top.gateway.components.dht, dht)  # type: ignore[attr-defined]
        self.assertEqual(dht.state_dir, Path(self.dir) / "dht")
        self.assertEqual(dht.announce_port, 6881)

    def test_unified_subscribes_to_the_store(self) -> None:
        top = makeService({"config": self.config()}, reactor=MemoryReactorClock())
        gw = top.gateway  # type: ignore[attr-defined]
        dht = gw.components.dht
        self.assertIn(dht.on_file_stored, gw.store._on_stored)
        self.assertIsNotNone(dht.announces.source)

    def test_disabled(self) -> None:
        top = makeService(
            {"config": self.config(dht={"enabled": False})}, reactor=MemoryReactorClock()
        )
        self.assertIsNone(top.gateway.components.dht)  # type: ignore[attr-defined]

    def test_the_peers_address_as_the_tracker_lists_it(self) -> None:
        # DHT and peer on any address: the public URL's host, as the tracker lists the peer.
        top = makeService({"config": self.config(
            dht={"bootstrap_nodes": [], "host": "0.0.0.0"}, peer={"host": "0.0.0.0"},
            gateway={"public_url": "http://198.51.100.4:9877"})}, reactor=MemoryReactorClock())
        parts = top.gateway.components  # type: ignore[attr-defined]
        self.assertEqual(parts.dht.announce_ips, ("198.51.100.4",))
        # the very addresses the peer lists itself under on the built-in tracker
        self.assertEqual(parts.dht.announce_ips, parts.peer.announcer.local_ips)
        # peer.external_ip comes first, as for the tracker.
        top = makeService({"config": self.config(
            dht={"bootstrap_nodes": [], "host": "0.0.0.0"},
            peer={"host": "0.0.0.0", "external_ip": "203.0.113.9"},
            gateway={"public_url": "http://198.51.100.4:9877"})}, reactor=MemoryReactorClock())
        parts = top.gateway.components  # type: ignore[attr-defined]
        self.assertEqual(parts.dht.announce_ips, ("203.0.113.9",))
        self.assertEqual(parts.dht.announce_ips, parts.peer.announcer.local_ips)
