"""KRPC codec: round-trips, strict validation, and garbage never raising anything but DecodeError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tgateway.bencode import DecodeError, decode, encode
from tgateway.dht import krpc

ID = b"I" * 20


class DecodeTests(SynchronousTestCase):
    def test_query_round_trip(self) -> None:
        data = krpc.encode_query(b"aa", b"get_peers", {b"id": ID, b"info_hash": b"h" * 20})
        msg = krpc.decode_message(data)
        assert isinstance(msg, krpc.Query)
        self.assertEqual((msg.t, msg.method, msg.sender, msg.ro), (b"aa", b"get_peers", ID, False))
        self.assertEqual(msg.args[b"info_hash"], b"h" * 20)

    def test_read_only_flag(self) -> None:
        msg = krpc.decode_message(krpc.encode_query(b"t", b"ping", {b"id": ID}, ro=True))
        assert isinstance(msg, krpc.Query)
        self.assertTrue(msg.ro)

    def test_response_round_trip_with_ip(self) -> None:
        ip = krpc.pack_addr("1.2.3.4", 6881)
        msg = krpc.decode_message(krpc.encode_response(b"xy", {b"id": ID}, ip))
        assert isinstance(msg, krpc.Response)
        self.assertEqual((msg.t, msg.sender, msg.ip), (b"xy", ID, ip))

    def test_error_round_trip(self) -> None:
        msg = krpc.decode_message(krpc.encode_error(b"e1", 204, "Method Unknown"))
        assert isinstance(msg, krpc.ErrorReply)
        self.assertEqual((msg.code, msg.message), (204, b"Method Unknown"))

    def test_spec_example_ping(self) -> None:
        # BEP 5's example ping query, byte for byte.
        msg = krpc.decode_message(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe")
        assert isinstance(msg, krpc.Query)
        self.assertEqual(msg.sender, b"abcdefghij0123456789")
        self.assertEqual(
            krpc.encode_response(b"aa", {b"id": b"mnopqrstuvwxyz123456"}),
            b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
        )

    def assertRejected(self, value: object, t: bytes | None = None) -> None:
        with self.assertRaises(krpc.KrpcDecodeError) as cm:
            krpc.decode_message(encode(value) if not isinstance(value, bytes) else value)
        self.assertEqual(cm.exception.t, t)

    def test_rejects(self) -> None:
        self.assertRejected(b"not bencode")
        self.assertRejected(b"i1e")
        self.assertRejected(b"d1:y1:qe")  # no t
        self.assertRejected({b"t": 1, b"y": b"q"})
        self.assertRejected({b"t": b"x" * 65, b"y": b"q"})
        self.assertRejected({b"t": b"aa", b"y": b"z"})
        self.assertRejected({b"t": b"aa", b"y": b"r", b"r": {b"id": b"short"}})
        self.assertRejected({b"t": b"aa", b"y": b"r", b"r": []})
        self.assertRejected({b"t": b"aa", b"y": b"e", b"e": [b"x", 201]})
        # Queries with a readable t can be answered with a 203.
        self.assertRejected({b"t": b"aa", b"y": b"q", b"a": {b"id": ID}}, t=b"aa")
        self.assertRejected({b"t": b"aa", b"y": b"q", b"q": b"ping"}, t=b"aa")
        self.assertRejected({b"t": b"aa", b"y": b"q", b"q": b"ping", b"a": {b"id": 5}}, t=b"aa")
        # Non-canonical bencode (unsorted keys, leading zeros) is refused too.
        self.assertRejected(b"d1:y1:q1:t2:aae")
        self.assertRejected(b"d1:ti01e1:y1:qe")

    def test_bad_ip_field_is_ignored(self) -> None:
        data = encode({b"t": b"aa", b"y": b"r", b"r": {b"id": ID}, b"ip": b"abc"})
        msg = krpc.decode_message(data)
        assert isinstance(msg, krpc.Response)
        self.assertIsNone(msg.ip)


class CompactTests(SynchronousTestCase):
    def test_addr_v4_v6(self) -> None:
        for ip, port in (
            ("1.2.3.4", 1),
            ("255.255.255.255", 65535),
            ("::1", 6881),
            ("2001:db8::7", 80),
        ):
            self.assertEqual(krpc.unpack_addr(krpc.pack_addr(ip, port)), (ip, port))
        self.assertEqual(len(krpc.pack_addr("::1", 1)), 18)
        for bad in (("1.2.3", 1), ("x", 1), ("1.2.3.4", 70000), ("1.2.3.4", -1)):
            self.assertRaises(ValueError, krpc.pack_addr, *bad)
        self.assertRaises(ValueError, krpc.unpack_addr, b"12345")

    def test_nodes(self) -> None:
        blob = krpc.pack_node(ID, "10.0.0.1", 6881) + krpc.pack_node(b"J" * 20, "10.0.0.2", 0)
        self.assertEqual(krpc.unpack_nodes(blob), [(ID, "10.0.0.1", 6881)])  # port 0 skipped
        blob6 = krpc.pack_node(ID, "fe80::1", 7)
        self.assertEqual(krpc.unpack_nodes(blob6, ipv6=True), [(ID, "fe80::1", 7)])
        self.assertRaises(krpc.ProtocolError, krpc.unpack_nodes, blob[:-1])
        self.assertRaises(krpc.ProtocolError, krpc.unpack_nodes, [blob])

    def test_peers(self) -> None:
        values = [
            krpc.pack_addr("1.2.3.4", 5),
            b"bad",
            7,
            krpc.pack_addr("::1", 9),
            krpc.pack_addr("1.1.1.1", 0),
        ]
        self.assertEqual(krpc.unpack_peers(values), [("1.2.3.4", 5), ("::1", 9)])
        self.assertRaises(krpc.ProtocolError, krpc.unpack_peers, b"x")

    def test_args(self) -> None:
        self.assertEqual(krpc.arg_id20({b"target": ID}, b"target"), ID)
        self.assertRaises(krpc.ProtocolError, krpc.arg_id20, {b"target": b"x"}, b"target")
        self.assertRaises(krpc.ProtocolError, krpc.arg_id20, {}, b"target")
        self.assertEqual(krpc.arg_port({b"port": 2}), 2)
        for bad in (0, 1, 65536, -5, b"80"):
            self.assertRaises(krpc.ProtocolError, krpc.arg_port, {b"port": bad})
        self.assertRaises(krpc.ProtocolError, krpc.arg_bytes, {b"token": b"x" * 65}, b"token", 64)


bencodable = st.recursive(
    st.integers(min_value=-(2**70), max_value=2**70) | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.binary(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


class FuzzTests(SynchronousTestCase):
    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=300))
    def test_garbage_raises_only_decode_error(self, data: bytes) -> None:
        try:
            krpc.decode_message(data)
        except DecodeError:
            pass

    @settings(max_examples=500, deadline=None)
    @given(bencodable)
    def test_structured_garbage(self, value: object) -> None:
        try:
            msg = krpc.decode_message(encode(value))
        except DecodeError:
            return
        self.assertIsInstance(msg, (krpc.Query, krpc.Response, krpc.ErrorReply))

    @settings(max_examples=200, deadline=None)
    @given(
        st.binary(min_size=1, max_size=8),
        st.sampled_from([b"ping", b"find_node", b"get_peers"]),
        st.dictionaries(
            st.sampled_from([b"target", b"info_hash", b"want"]), st.binary(max_size=20)
        ),
    )
    def test_query_round_trip(self, t: bytes, method: bytes, args: dict[bytes, bytes]) -> None:
        args = {**args, b"id": ID}
        data = krpc.encode_query(t, method, args)
        msg = krpc.decode_message(data)
        assert isinstance(msg, krpc.Query)
        self.assertEqual((msg.t, msg.method, msg.args), (t, method, args))
        self.assertEqual(decode(data)[b"y"], b"q")
