"""The node core: queries served, tokens, limits, maintenance, BEP 42 id changes."""

from __future__ import annotations

import random
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tgateway.bencode import decode, encode
from tgateway.dht import bep42
from tgateway.dht.krpc import pack_addr, pack_node, unpack_nodes
from tgateway.dht.node import DhtNode
from tgateway.dht.routing import GOOD_WINDOW, REFRESH_AFTER
from tgateway.dht.tokens import TOKEN_ROTATE

OWN = b"\x80" + b"\0" * 19
ME = ("10.1.1.1", 4000)
IH = b"H" * 20


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.timers: dict[bytes, float] = {}

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def set_timer(self, tid: bytes, delay: float) -> None:
        self.timers[tid] = delay

    def cancel_timer(self, tid: bytes) -> None:
        self.timers.pop(tid, None)

    def pop(self) -> list[tuple[dict[bytes, Any], tuple[str, int]]]:
        out = [(decode(d), a) for d, a in self.sent]
        self.sent.clear()
        return out


def make(**kw: Any) -> tuple[DhtNode, Recorder]:
    out = Recorder()
    kw.setdefault("restrict_ips", False)
    return DhtNode(OWN, out, random.Random(1), 0.0, **kw), out


def query(
    node: DhtNode,
    out: Recorder,
    method: bytes,
    args: dict[bytes, Any],
    now: float = 0.0,
    src: tuple[str, int] = ME,
    sender: bytes = b"S" * 20,
    t: bytes = b"tt",
) -> dict[bytes, Any]:
    """Send one query; return the reply to it (other datagrams, e.g. pings, stay in out.sent)."""
    node.datagram_received(
        encode({b"t": t, b"y": b"q", b"q": method, b"a": {b"id": sender, **args}}), src, now
    )
    for i, (data, addr) in enumerate(out.sent):
        msg = decode(data)
        if addr == src and msg.get(b"t") == t and msg[b"y"] in (b"r", b"e"):
            del out.sent[i]
            return msg
    raise AssertionError("no reply")


def respond(
    node: DhtNode,
    out: Recorder,
    msg: dict[bytes, Any],
    addr: tuple[str, int],
    node_id: bytes,
    now: float = 0.0,
    **values: Any,
) -> None:
    r = {b"id": node_id, **{k.encode(): v for k, v in values.items()}}
    node.datagram_received(encode({b"t": msg[b"t"], b"y": b"r", b"r": r}), addr, now)


class QueryTests(SynchronousTestCase):
    def test_ping(self) -> None:
        node, out = make()
        reply = query(node, out, b"ping", {})
        self.assertEqual(reply[b"y"], b"r")
        self.assertEqual(reply[b"r"], {b"id": OWN})
        self.assertEqual(reply[b"ip"], pack_addr(*ME))  # BEP 42: the requester's address

    def test_unknown_method_is_204(self) -> None:
        node, out = make()
        reply = query(node, out, b"vote", {})
        self.assertEqual(reply[b"e"][0], 204)

    def test_queries_counted_by_method_with_unknown_ones_as_other(self) -> None:
        node, out = make()
        query(node, out, b"ping", {})
        query(node, out, b"ping", {}, t=b"t2")
        query(node, out, b"find_node", {b"target": b"T" * 20}, t=b"t3")
        for i in range(3):  # methods a client makes up add no series
            query(node, out, b"vote%d" % i, {}, t=b"u%d" % i)
        self.assertEqual(node.stats.methods_in, {b"ping": 2, b"find_node": 1, b"other": 3})
        sent = node.stats.methods_out.get(b"ping", 0)  # it may have pinged a new sender
        node.ping(("10.2.2.2", 6881), 0.0)
        self.assertEqual(node.stats.methods_out[b"ping"], sent + 1)

    def test_malformed_queries_are_203(self) -> None:
        node, out = make()
        node.datagram_received(
            encode({b"t": b"x1", b"y": b"q", b"q": b"ping", b"a": {b"id": b"short"}}), ME, 0
        )
        ((msg, addr),) = out.pop()
        self.assertEqual((msg[b"t"], msg[b"e"][0], addr), (b"x1", 203, ME))
        for method, args in (
            (b"find_node", {}),
            (b"find_node", {b"target": b"short"}),
            (b"get_peers", {b"info_hash": 5}),
            (b"announce_peer", {b"info_hash": IH, b"port": 80}),  # no token
            (b"sample_infohashes", {}),
        ):
            self.assertEqual(query(node, out, method, args)[b"e"][0], 203, method)

    def test_undecodable_datagrams_are_dropped(self) -> None:
        node, out = make()
        for data in (b"", b"garbage", b"d1:t2:aae", b"le", encode({b"t": 5, b"y": b"q"})):
            node.datagram_received(data, ME, 0)
        self.assertEqual(out.sent, [])
        self.assertEqual(node.stats.malformed, 5)

    def add_nodes(self, node: DhtNode, n: int) -> list[bytes]:
        rng = random.Random(5)
        ids = []
        for i in range(n):
            x = rng.randbytes(20)
            node.table.add(x, f"10.9.0.{i + 1}", 7000 + i, 0)
            ids.append(x)
        return ids

    def test_find_node_returns_closest(self) -> None:
        node, out = make()
        ids = self.add_nodes(node, 30)
        target = ids[3]
        reply = query(node, out, b"find_node", {b"target": target})
        nodes = unpack_nodes(reply[b"r"][b"nodes"])
        self.assertEqual(len(nodes), 8)
        self.assertEqual(nodes[0][0], target)
        ti = int.from_bytes(target, "big")
        in_table = [e.id for e in node.table.entries()]
        self.assertEqual(
            [n[0] for n in nodes], sorted(in_table, key=lambda x: int.from_bytes(x, "big") ^ ti)[:8]
        )

    def test_bad_nodes_leave_cached_answers(self) -> None:
        node, out = make()
        ids = self.add_nodes(node, 5)
        first = unpack_nodes(query(node, out, b"find_node", {b"target": IH})[b"r"][b"nodes"])
        self.assertEqual(len(first), 5)
        node.table.failed(ids[0], 1)
        node.table.failed(ids[0], 1)
        again = unpack_nodes(
            query(node, out, b"find_node", {b"target": IH}, t=b"t2")[b"r"][b"nodes"]
        )
        self.assertEqual(sorted(n[0] for n in again), sorted(ids[1:]))

    def test_want_n6_without_ipv6_node_falls_back(self) -> None:
        node, out = make()
        self.add_nodes(node, 3)
        reply = query(node, out, b"find_node", {b"target": IH, b"want": [b"n6"]})
        self.assertIn(b"nodes", reply[b"r"])  # nothing for n6 here: the IPv4 nodes instead
        sibling, _ = make(ipv6=True)
        sibling.table.add(b"Z" * 20, "2001:db8::1", 6881, 0)
        node.sibling = sibling
        reply = query(node, out, b"find_node", {b"target": IH, b"want": [b"n4", b"n6"]}, t=b"w2")
        self.assertEqual(len(reply[b"r"][b"nodes"]), 3 * 26)
        self.assertEqual(reply[b"r"][b"nodes6"], pack_node(b"Z" * 20, "2001:db8::1", 6881))

    def test_ipv6_node_answers_nodes6(self) -> None:
        node, out = make(ipv6=True)
        node.table.add(b"Z" * 20, "2001:db8::1", 6881, 0)
        reply = query(node, out, b"find_node", {b"target": IH}, src=("2001:db8::9", 5))
        self.assertEqual(
            unpack_nodes(reply[b"r"][b"nodes6"], ipv6=True), [(b"Z" * 20, "2001:db8::1", 6881)]
        )
        self.assertEqual(len(reply[b"ip"]), 18)

    def test_get_peers_then_announce(self) -> None:
        node, out = make()
        reply = query(node, out, b"get_peers", {b"info_hash": IH})
        self.assertNotIn(b"values", reply[b"r"])
        self.assertIn(b"nodes", reply[b"r"])
        token = reply[b"r"][b"token"]
        reply = query(
            node, out, b"announce_peer", {b"info_hash": IH, b"port": 5555, b"token": token}
        )
        self.assertEqual(reply[b"y"], b"r")
        reply = query(node, out, b"get_peers", {b"info_hash": IH}, src=("10.7.7.7", 1))
        self.assertEqual(reply[b"r"][b"values"], [pack_addr("10.1.1.1", 5555)])

    def test_refused_info_hash_is_never_stored_answered_or_sampled(self) -> None:
        """The gateway's block list: an announce is acknowledged but not kept, and peers stored
        before the block (our own announce included) are no longer given out."""
        node, out = make()
        blocked: set[bytes] = set()
        node.refused = blocked.__contains__
        token = query(node, out, b"get_peers", {b"info_hash": IH})[b"r"][b"token"]
        query(node, out, b"announce_peer", {b"info_hash": IH, b"port": 5555, b"token": token})
        reply = query(node, out, b"get_peers", {b"info_hash": IH}, src=("10.7.7.7", 1))
        self.assertEqual(reply[b"r"][b"values"], [pack_addr("10.1.1.1", 5555)])
        sample = query(node, out, b"sample_infohashes", {b"target": IH})
        self.assertEqual(sample[b"r"][b"samples"], IH)
        blocked.add(IH)
        reply = query(node, out, b"get_peers", {b"info_hash": IH}, src=("10.7.7.7", 1), t=b"t2")
        self.assertNotIn(b"values", reply[b"r"])
        self.assertIn(b"nodes", reply[b"r"])
        token = reply[b"r"][b"token"]
        reply = query(node, out, b"announce_peer",
                      {b"info_hash": IH, b"port": 6666, b"token": token}, src=("10.7.7.7", 1))
        self.assertEqual(reply[b"y"], b"r")
        self.assertEqual(node.store.get(IH, 0, 10, random.Random()),
                         [pack_addr("10.1.1.1", 5555)])  # the new one was not kept
        sample = query(node, out, b"sample_infohashes", {b"target": IH}, now=1000.0, t=b"t3")
        self.assertEqual((sample[b"r"][b"samples"], sample[b"r"][b"num"]), (b"", 0))

    def test_withdraw_forgets_only_our_own_address(self) -> None:
        node, out = make()
        node.announce(IH, 6881, 0.0, local_ip="10.0.0.9")
        token = query(node, out, b"get_peers", {b"info_hash": IH})[b"r"][b"token"]
        query(node, out, b"announce_peer", {b"info_hash": IH, b"port": 5555, b"token": token})
        self.assertEqual(sorted(node.store.get(IH, 0, 10, random.Random())),
                         sorted([pack_addr("10.0.0.9", 6881), pack_addr("10.1.1.1", 5555)]))
        node.withdraw(IH, 6881, local_ip="10.0.0.9")
        self.assertEqual(node.store.get(IH, 0, 10, random.Random()),
                         [pack_addr("10.1.1.1", 5555)])

    def test_implied_port(self) -> None:
        node, out = make()
        token = query(node, out, b"get_peers", {b"info_hash": IH})[b"r"][b"token"]
        query(
            node,
            out,
            b"announce_peer",
            {b"info_hash": IH, b"port": 1, b"implied_port": 1, b"token": token},
        )
        self.assertEqual(node.store.get(IH, 0, 10, random.Random()), [pack_addr(*ME)])

    def test_ports_zero_and_one_refused(self) -> None:
        node, out = make()
        token = query(node, out, b"get_peers", {b"info_hash": IH})[b"r"][b"token"]
        for port in (0, 1, 65536):
            reply = query(
                node, out, b"announce_peer", {b"info_hash": IH, b"port": port, b"token": token}
            )
            self.assertEqual(reply[b"e"][0], 203)
        # implied_port from a source port of 1 is refused too.
        token1 = query(node, out, b"get_peers", {b"info_hash": IH}, src=("10.1.1.1", 1))[b"r"][
            b"token"
        ]
        reply = query(
            node,
            out,
            b"announce_peer",
            {b"info_hash": IH, b"port": 80, b"implied_port": 1, b"token": token1},
            src=("10.1.1.1", 1),
        )
        self.assertEqual(reply[b"e"][0], 203)
        self.assertNotIn(IH, node.store)

    def test_token_bound_to_ip(self) -> None:
        node, out = make()
        token = query(node, out, b"get_peers", {b"info_hash": IH})[b"r"][b"token"]
        reply = query(
            node,
            out,
            b"announce_peer",
            {b"info_hash": IH, b"port": 80, b"token": token},
            src=("10.2.2.2", 4000),
        )
        self.assertEqual(reply[b"e"], [203, b"bad token"])

    def test_token_rotation_and_expiry(self) -> None:
        node, out = make()
        token = query(node, out, b"get_peers", {b"info_hash": IH})[b"r"][b"token"]
        # Still valid after one rotation (previous secret), refused after two.
        later = TOKEN_ROTATE + 1
        fresh = query(node, out, b"get_peers", {b"info_hash": IH}, now=later)[b"r"][b"token"]
        self.assertNotEqual(fresh, token)
        ok = query(
            node, out, b"announce_peer", {b"info_hash": IH, b"port": 80, b"token": token}, now=later
        )
        self.assertEqual(ok[b"y"], b"r")
        much_later = 2 * TOKEN_ROTATE + 2
        node.tick(much_later)
        bad = query(
            node,
            out,
            b"announce_peer",
            {b"info_hash": IH, b"port": 80, b"token": token},
            now=much_later,
        )
        self.assertEqual(bad[b"e"][0], 203)

    def test_sample_infohashes(self) -> None:
        node, out = make()
        known = [bytes([i]) * 20 for i in range(30)]
        node.known_info_hashes = lambda: known
        node.store.add(IH, pack_addr("1.2.3.4", 5), 0)
        reply = query(node, out, b"sample_infohashes", {b"target": IH})[b"r"]
        self.assertEqual(reply[b"num"], 31)
        self.assertEqual(len(reply[b"samples"]), 20 * 20)
        self.assertTrue(
            set(reply[b"samples"][i : i + 20] for i in range(0, 400, 20)) <= set(known) | {IH}
        )
        self.assertGreater(reply[b"interval"], 0)
        self.assertIn(b"nodes", reply)


class LimitTests(SynchronousTestCase):
    def test_rate_limit_per_ip(self) -> None:
        node, out = make(query_rate=10, query_burst=5)
        for i in range(8):
            node.datagram_received(
                encode({b"t": b"%d" % i, b"y": b"q", b"q": b"ping", b"a": {b"id": b"S" * 20}}),
                ME,
                0,
            )
        replies = [m for m, a in out.pop() if m[b"y"] == b"r" and a == ME]
        self.assertEqual(len(replies), 5)
        self.assertEqual(node.stats.rate_limited, 3)
        # Another IP is not affected; the first one refills with time.
        query(node, out, b"ping", {}, src=("10.3.3.3", 1))
        query(node, out, b"ping", {}, now=0.2)

    def test_outstanding_cap(self) -> None:
        node, out = make(max_outstanding=4)
        sent = [node.ping((f"10.0.0.{i}", 1), 0) for i in range(6)]
        self.assertEqual(sent, [True] * 4 + [False] * 2)
        self.assertEqual(node.outstanding, 4)

    def test_stalled_lookup_resumes_when_a_slot_frees(self) -> None:
        node, out = make(max_outstanding=1)
        results: list[Any] = []
        node.ping(("10.0.0.1", 1), 0)
        node.find_node(IH, 0, results.append)  # no candidates: finishes at once
        self.assertEqual(len(results), 1)
        node.bootstrap_addrs = [("10.0.0.2", 2)]
        node.find_node(IH, 0, results.append)  # stalled: the only slot is taken
        self.assertEqual(len(results), 1)
        (ping_tid,) = list(out.timers)
        out.timers.pop(ping_tid)
        node.timeout(ping_tid, 4)
        self.assertEqual(out.sent[-1][1], ("10.0.0.2", 2))  # the lookup went on
        (tid,) = list(out.timers)
        node.timeout(tid, 8)
        self.assertEqual(len(results), 2)


class MaintenanceTests(SynchronousTestCase):
    def test_new_querier_is_pinged_then_added(self) -> None:
        node, out = make()
        query(node, out, b"ping", {}, sender=b"Q" * 20)
        ((ping, addr),) = out.pop()
        self.assertEqual((ping[b"q"], addr), (b"ping", ME))
        respond(node, out, ping, ME, b"Q" * 20, now=0.1)
        self.assertIsNotNone(node.table.get(b"Q" * 20))
        self.assertEqual(out.timers, {})
        # Known now: further queries are not answered with pings.
        query(node, out, b"ping", {}, sender=b"Q" * 20, now=1)
        self.assertEqual(out.sent, [])

    def test_read_only_querier_not_added(self) -> None:
        node, out = make()
        node.datagram_received(
            encode({b"t": b"a", b"y": b"q", b"q": b"ping", b"ro": 1, b"a": {b"id": b"Q" * 20}}),
            ME,
            0,
        )
        self.assertEqual([m[b"y"] for m, _ in out.pop()], [b"r"])

    def test_response_from_wrong_address_ignored(self) -> None:
        node, out = make()
        node.ping(("10.0.0.5", 5), 0)
        ((msg, _),) = out.pop()
        respond(node, out, msg, ("10.0.0.6", 5), b"R" * 20)
        self.assertEqual(len(node.table), 0)
        self.assertEqual(node.stats.unexpected, 1)

    def test_timeouts_make_nodes_bad(self) -> None:
        node, out = make()
        node.table.add(b"R" * 20, "10.0.0.5", 5, 0)
        for i in range(2):
            node.ping(("10.0.0.5", 5), i, node_id=b"R" * 20)
            (tid,) = list(out.timers)
            out.timers.clear()
            node.timeout(tid, i + 4)
        self.assertEqual(node.table.get(b"R" * 20).state(10), "bad")  # type: ignore[union-attr]
        self.assertEqual(node.stats.timeouts, 2)

    def test_tick_pings_questionable_nodes(self) -> None:
        node, out = make()
        node.table.add(b"R" * 20, "10.0.0.5", 5, 0)
        node.table.buckets[0].last_changed = 10**6  # no refresh in this test
        node.tick(10)
        self.assertEqual(out.pop(), [])
        node.tick(GOOD_WINDOW + 1)
        self.assertEqual([(m[b"q"], a) for m, a in out.pop()], [(b"ping", ("10.0.0.5", 5))])
        node.tick(GOOD_WINDOW + 2)  # still waiting for that answer: no second ping
        self.assertEqual(out.pop(), [])

    def test_tick_refreshes_stale_buckets(self) -> None:
        node, out = make()
        node.table.add(b"R" * 20, "10.0.0.5", 5, 0)
        node.tick(10)
        self.assertEqual(out.pop(), [])
        node.tick(REFRESH_AFTER + 1)
        msgs = out.pop()
        # The silent bucket is refreshed with a find_node of a random id inside it (which is also
        # the questionable node's liveness check: no separate ping).
        self.assertEqual([m[b"q"] for m, _ in msgs], [b"find_node"])
        target = next(m[b"a"][b"target"] for m, _ in msgs if m[b"q"] == b"find_node")
        self.assertTrue(node.table.buckets[0].covers(int.from_bytes(target, "big")))
        node.tick(REFRESH_AFTER + 2)  # refreshed buckets are not refreshed again at once
        self.assertNotIn(b"find_node", [m.get(b"q") for m, _ in out.pop()])

    def test_bootstrap_retried_while_table_empty(self) -> None:
        node, out = make()
        node.bootstrap([("10.0.0.9", 6881)], 0)
        self.assertEqual(len(out.pop()), 1)
        for tid in list(out.timers):
            out.timers.pop(tid)
            node.timeout(tid, 4)
        node.tick(10)
        self.assertEqual(out.pop(), [])
        node.tick(31)
        ((msg, addr),) = out.pop()
        self.assertEqual((msg[b"q"], addr), (b"find_node", ("10.0.0.9", 6881)))

    def test_external_ip_votes_give_a_bep42_id(self) -> None:
        node, out = make()
        changed: list[bytes] = []
        node.on_id_change = changed.append
        node.table.add(b"R" * 20, "10.0.0.5", 5, 0)
        for i in range(5):
            node.ping((f"10.0.1.{i}", 1), 0)
            ((msg, addr),) = [x for x in out.pop() if x[0].get(b"q") == b"ping"]
            r = {b"id": bytes([i + 1]) * 20}
            node.datagram_received(
                encode({b"t": msg[b"t"], b"y": b"r", b"r": r, b"ip": pack_addr("8.8.4.4", 4000)}),
                addr,
                0,
            )
        self.assertEqual(node.external_ip, "8.8.4.4")
        self.assertEqual(len(changed), 1)
        self.assertTrue(bep42.id_matches_ip(node.node_id, "8.8.4.4"))
        self.assertEqual(node.table.own_id, node.node_id)
        self.assertIsNotNone(node.table.get(b"R" * 20))  # the table survived the change

    def test_private_ip_votes_ignored(self) -> None:
        node, out = make()
        for i in range(6):
            node.ping((f"10.0.1.{i}", 1), 0)
            ((msg, addr),) = out.pop()
            node.datagram_received(
                encode(
                    {
                        b"t": msg[b"t"],
                        b"y": b"r",
                        b"r": {b"id": bytes([i + 1]) * 20},
                        b"ip": pack_addr("192.168.0.2", 1),
                    }
                ),
                addr,
                0,
            )
        self.assertIsNone(node.external_ip)
        self.assertEqual(node.node_id, OWN)
