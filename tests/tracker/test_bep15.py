"""BEP 15, both ends: the tracker's requests and replies, the peer announcer's packets, garbage."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tgateway.bencode import DecodeError
from tgateway.tracker import bep15

IH = bytes(range(20))
PID = b"-TG0001-" + b"\xff\x00%&=+ abcdefgh"[:12]


class UdpTests(SynchronousTestCase):
    def test_connect(self) -> None:
        self.assertEqual(bep15.decode_request(struct.pack(">QII", 0x41727101980, 0, 77)), (0, 77))
        self.assertEqual(bep15.encode_connect_reply(77, 5), struct.pack(">IIQ", 0, 77, 5))
        with self.assertRaises(bep15.UdpDecodeError) as e:
            bep15.decode_request(struct.pack(">QII", 1234, 0, 77))
        self.assertIsNone(e.exception.transaction_id)

    def test_announce_with_bep41_options(self) -> None:
        pkt = struct.pack(">QII20s20sQQQIIIiH", 9, 1, 5, IH, PID, 1, 2, 3, 2, 0, 42, -1, 6881)
        req = bep15.decode_request(pkt + b"\x02\x05/abcd\x00")
        self.assertEqual(req, (1, 5, 9, IH, PID, 1, 2, 3, 2, 0, 42, -1, 6881))
        with self.assertRaises(bep15.UdpDecodeError) as e:
            bep15.decode_request(pkt[:97])
        self.assertEqual(e.exception.transaction_id, 5)
        bad_event = struct.pack(">QII20s20sQQQIIIiH", 9, 1, 5, IH, PID, 1, 2, 3, 9, 0, 42, -1, 6881)
        with self.assertRaises(bep15.UdpDecodeError):
            bep15.decode_request(bad_event)

    def test_reply_field_order(self) -> None:
        # announce: interval, leechers, seeders
        self.assertEqual(bep15.encode_announce_reply(5, 1800, 7, 9, b"P" * 6),
                         struct.pack(">IIIII", 1, 5, 1800, 7, 9) + b"P" * 6)
        # scrape: seeders, completed, leechers
        self.assertEqual(bep15.encode_scrape_reply(5, [(1, 2, 3)]), struct.pack(">IIIII", 2, 5, 1, 2, 3))
        self.assertEqual(bep15.encode_error_reply(5, "x"), struct.pack(">II", 3, 5) + b"x")

    def test_scrape_limit(self) -> None:
        pkt = struct.pack(">QII", 9, 2, 5) + IH * 100 + b"xyz"
        req = bep15.decode_request(pkt)
        self.assertEqual(len(req[3]), 74)
        with self.assertRaises(bep15.UdpDecodeError):
            bep15.decode_request(struct.pack(">QII", 9, 2, 5) + b"short")

    @given(st.binary(max_size=200))
    @settings(max_examples=500)
    def test_garbage(self, data: bytes) -> None:
        try:
            bep15.decode_request(data)
        except bep15.UdpDecodeError:
            pass

    @given(st.integers(0, 3), st.binary(min_size=82, max_size=120))
    def test_garbage_with_valid_action(self, action: int, rest: bytes) -> None:
        data = rest[:8] + struct.pack(">I", action) + rest[8:]
        try:
            bep15.decode_request(data)
        except bep15.UdpDecodeError:
            pass


class ClientTests(SynchronousTestCase):
    def test_the_announcers_packets_are_what_the_tracker_decodes(self) -> None:
        """The peer's requests and the tracker's replies go through the one codec both ways."""
        packet = bep15.encode_connect_request(77)
        self.assertEqual(bep15.decode_request(packet), (0, 77))
        ih, pid = b"\x05" * 20, b"-TG0010-" + b"b" * 12
        packet = bep15.encode_announce_request(0x1234, 78, ih, pid, "started", 99, 6881)
        self.assertEqual(len(packet), 98)
        self.assertEqual(bep15.decode_request(packet),
                         (1, 78, 0x1234, ih, pid, 0, 0, 0, 2, 0, 99, 0, 6881))
        self.assertEqual(bep15.decode_reply(bep15.encode_connect_reply(5, 42))[:2], (0, 5))

    def test_reply_bodies(self) -> None:
        self.assertEqual(bep15.decode_connection_id(struct.pack(">Q", 0x1234)), 0x1234)
        self.assertEqual(bep15.decode_announce_interval(struct.pack(">III", 1800, 1, 2)), 1800)
        for short in (lambda: bep15.decode_reply(b"\x00" * 7),
                      lambda: bep15.decode_connection_id(b"\x00" * 7),
                      lambda: bep15.decode_announce_interval(b"\x00" * 11)):
            with self.assertRaises(DecodeError):
                short()
