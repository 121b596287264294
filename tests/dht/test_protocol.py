"""The UDP adapter: datagrams in and out, per-query timers on the injected clock, and fuzzed
datagrams that never escape (nothing raised, nothing logged as a failure)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, FakeDatagramTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tgateway.bencode import decode, encode
from tgateway.dht.node import QUERY_TIMEOUT, DhtNode
from tgateway.dht.protocol import DhtProtocol

OWN = b"O" * 20
PEER = ("10.0.0.2", 6881)


def make() -> tuple[DhtProtocol, DhtNode, FakeDatagramTransport, Clock]:
    clock = Clock()
    proto = DhtProtocol(clock)
    node = DhtNode(OWN, proto, random.Random(1), 0.0, restrict_ips=False)
    proto.node = node
    transport = FakeDatagramTransport()
    proto.makeConnection(transport)
    return proto, node, transport, clock


class ProtocolTests(SynchronousTestCase):
    def test_answers_a_ping(self) -> None:
        proto, node, transport, clock = make()
        proto.datagramReceived(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe", PEER)
        data, addr = transport.written[0]
        self.assertEqual(addr, PEER)
        self.assertEqual(decode(data)[b"r"], {b"id": OWN})

    def test_ipv6_addresses_are_trimmed(self) -> None:
        proto, node, transport, clock = make()
        node.ipv6 = True
        proto.datagramReceived(
            encode({b"t": b"a", b"y": b"q", b"q": b"ping", b"a": {b"id": b"x" * 20}}),
            ("::1", 5, 0, 0),
        )
        self.assertEqual(transport.written[0][1], ("::1", 5))

    def test_query_timeout_from_the_clock(self) -> None:
        proto, node, transport, clock = make()
        answers: list[object] = []
        node.ping(PEER, clock.seconds(), lambda r, now: answers.append(r))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(QUERY_TIMEOUT - 0.1)
        self.assertEqual(answers, [])
        clock.advance(0.2)
        self.assertEqual(answers, [None])
        self.assertEqual(node.stats.timeouts, 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_response_cancels_the_timer(self) -> None:
        proto, node, transport, clock = make()
        answers: list[object] = []
        node.ping(PEER, clock.seconds(), lambda r, now: answers.append(r))
        t = decode(transport.written[0][0])[b"t"]
        proto.datagramReceived(encode({b"t": t, b"y": b"r", b"r": {b"id": b"P" * 20}}), PEER)
        self.assertEqual(len(answers), 1)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertIsNotNone(node.table.get(b"P" * 20))

    def test_stop_cancels_timers(self) -> None:
        proto, node, transport, clock = make()
        node.ping(PEER, 0)
        proto.doStop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_send_errors_are_swallowed(self) -> None:
        proto, node, transport, clock = make()

        def boom(data: bytes, addr: object) -> None:
            raise OSError(101, "Network is unreachable")

        transport.write = boom  # type: ignore[method-assign]
        proto.datagramReceived(
            encode({b"t": b"a", b"y": b"q", b"q": b"ping", b"a": {b"id": b"x" * 20}}), PEER
        )
        self.assertEqual(proto.send_errors, 2)  # the reply, and the ping to the new node

    def test_no_node_attached(self) -> None:
        proto = DhtProtocol(Clock())
        proto.makeConnection(FakeDatagramTransport())
        proto.datagramReceived(b"anything", PEER)


def _msg(draw_t: bytes, y: bytes, q: bytes, a: object) -> bytes:
    return encode({b"t": draw_t, b"y": y, b"q": q, b"a": a})


values = st.recursive(
    st.integers(-(2**65), 2**65) | st.binary(max_size=30),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.binary(max_size=10), c, max_size=3),
    max_leaves=8,
)
arg_dicts = st.dictionaries(
    st.sampled_from(
        [b"id", b"target", b"info_hash", b"token", b"port", b"implied_port", b"want", b"x"]
    ),
    values | st.binary(min_size=20, max_size=20) | st.integers(-2, 70000),
    max_size=6,
)
queries = st.builds(
    _msg,
    st.binary(max_size=70),
    st.sampled_from([b"q", b"r", b"e", b"x"]),
    st.sampled_from(
        [b"ping", b"find_node", b"get_peers", b"announce_peer", b"sample_infohashes", b"other"]
    ),
    arg_dicts | values,
)
responses = st.builds(
    lambda t, r, ip: encode({b"t": t, b"y": b"r", b"r": r, b"ip": ip}),
    st.binary(min_size=2, max_size=2),
    st.dictionaries(
        st.sampled_from([b"id", b"nodes", b"nodes6", b"values", b"token", b"samples"]),
        values | st.binary(min_size=20, max_size=20) | st.lists(st.binary(min_size=6, max_size=6)),
        max_size=5,
    ),
    st.binary(max_size=20),
)


class FuzzTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.proto, self.node, self.transport, self.clock = make()
        # A lookup in flight, so fuzzed responses can land on pending transaction ids.
        self.node.bootstrap([PEER, ("10.0.0.3", 1)], 0)

    def check(self, data: bytes, addr: tuple[str, int] = PEER) -> None:
        self.proto.datagramReceived(data, addr)
        failures = [e for e in self.events if e.get("log_failure") is not None]
        self.assertEqual(failures, [])

    @settings(max_examples=400, deadline=None)
    @given(st.binary(max_size=200))
    def test_random_bytes(self, data: bytes) -> None:
        self.check(data)

    @settings(max_examples=600, deadline=None)
    @given(queries)
    def test_structured_queries(self, data: bytes) -> None:
        self.check(data)

    @settings(max_examples=400, deadline=None)
    @given(responses, st.integers(0, 2))
    def test_responses_to_pending_queries(self, data: bytes, which: int) -> None:
        # Aim at a real pending transaction id sometimes.
        pending = list(self.node._pending)
        if pending and which:
            msg = decode(data)
            msg[b"t"] = pending[0]
            data = encode(msg)
            addr = self.node._pending[pending[0]].addr
        else:
            addr = PEER
        self.check(data, addr)
        if not self.node._pending:
            self.node.bootstrap([PEER], self.clock.seconds())
