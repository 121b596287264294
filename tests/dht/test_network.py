"""Lookups on a simulated network of 200 in-process nodes (fake clock, in-memory datagrams)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.dht.sim import SimNetwork
from tgateway.dht.lookup import LookupResult

N = 200


def build(seed: int, n: int = N) -> SimNetwork:
    """n nodes joining one after the other through node 0, then a few maintenance rounds."""
    net = SimNetwork(seed=seed)
    nodes = [net.add_node() for _ in range(n)]
    boot = net.addr_of(nodes[0])
    for node in nodes[1:]:
        node.bootstrap([boot], net.clock.seconds())
        net.run(0.2)
    net.run(5)
    # Everyone looks up a random id once more, as a bucket refresh would.
    for node in nodes:
        node.find_node(net.rng.randbytes(20), net.clock.seconds(), lambda r: None)
    net.run(10)
    return net


def true_closest(net: SimNetwork, target: bytes, k: int = 8) -> list[bytes]:
    t = int.from_bytes(target, "big")
    return sorted(
        (n.node_id for n in net.nodes.values()), key=lambda x: int.from_bytes(x, "big") ^ t
    )[:k]


class NetworkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.net = build(seed=11)
        self.nodes = list(self.net.nodes.values())

    def lookup(self, start: int, method: str, target: bytes) -> LookupResult:
        got: list[LookupResult] = []
        getattr(self.nodes[start], method)(target, self.net.clock.seconds(), got.append)
        self.assertTrue(self.net.run_until(lambda: bool(got), limit=120))
        return got[0]

    def test_every_node_joined(self) -> None:
        sizes = [len(n.table) for n in self.nodes]
        self.assertGreaterEqual(min(sizes), 8)
        self.assertEqual(sum(n.stats.malformed for n in self.nodes), 0)

    def test_find_node_converges_on_the_k_closest(self) -> None:
        exact = 0
        for i in range(20):
            target = self.net.rng.randbytes(20)
            result = self.lookup(i * 7 % N, "find_node", target)
            got = [node_id for node_id, _, _ in result.nodes]
            # The starting node is not in its own results.
            start_id = self.nodes[i * 7 % N].node_id
            want = [x for x in true_closest(self.net, target, 9) if x != start_id][:8]
            overlap = len(set(got) & set(want))
            self.assertGreaterEqual(overlap, 7, f"lookup {i}: {overlap}/8 of the true closest")
            exact += got == want
            # α = 3 and a bounded walk: far fewer queries than nodes.
            self.assertLess(result.queries, 60)
        self.assertGreaterEqual(exact, 16)

    def test_announce_then_get_peers_from_anywhere(self) -> None:
        info_hash = self.net.rng.randbytes(20)
        sent: list[int] = []
        self.nodes[3].announce(
            info_hash, 6881, self.net.clock.seconds(), lambda r, n: sent.append(n)
        )
        self.assertTrue(self.net.run_until(lambda: bool(sent)))
        self.assertEqual(sent, [8])
        self.net.run(1)
        holders = [n for n in self.nodes if info_hash in n.store]
        self.assertEqual(len(holders), 8)
        for start in (50, 120, 199):
            result = self.lookup(start, "get_peers", info_hash)
            self.assertEqual(result.peers, [(self.net.addr_of(self.nodes[3])[0], 6881)])

    def test_lookups_survive_dead_nodes(self) -> None:
        # A quarter of the network disappears: lookups time out on them and still finish.
        for addr in list(self.net.nodes)[100:150]:
            del self.net.nodes[addr]
        alive = list(self.net.nodes.values())
        target = self.net.rng.randbytes(20)
        got: list[LookupResult] = []
        alive[5].find_node(target, self.net.clock.seconds(), got.append)
        self.assertTrue(self.net.run_until(lambda: bool(got), limit=120))
        t = int.from_bytes(target, "big")
        want = sorted(
            (n.node_id for n in alive if n is not alive[5]),
            key=lambda x: int.from_bytes(x, "big") ^ t,
        )[:8]
        self.assertGreaterEqual(len(set(x for x, _, _ in got[0].nodes) & set(want)), 6)

    def test_maintenance_keeps_tables_healthy(self) -> None:
        # An hour of ticks: buckets refresh, questionable nodes get pinged, nobody turns bad.
        for _ in range(12):
            self.net.run(300)
            self.net.tick_all()
            self.net.run(10)
        now = self.net.clock.seconds()
        good = [n.table.good_count(now) for n in self.nodes]
        self.assertGreaterEqual(min(good), 8)
        self.assertEqual(sum(n.stats.malformed for n in self.nodes), 0)
