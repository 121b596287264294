"""The HTTP tracker codec: exact formats, round trips, and "garbage never raises anything but
DecodeError"."""

from __future__ import annotations

from urllib.parse import quote_from_bytes

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tgateway import bencode
from tgateway.bencode import DecodeError
from tgateway.tracker import wire
from tgateway.tracker.core import (
    EVENT_COMPLETED,
    EVENT_NONE,
    EVENT_STARTED,
    EVENT_STOPPED,
)

IH = bytes(range(20))
PID = b"-TG0001-" + b"\xff\x00%&=+ abcdefgh"[:12]


def q(b: bytes) -> bytes:
    return quote_from_bytes(b).encode()


class HttpQueryTests(SynchronousTestCase):
    def test_announce_raw_bytes(self) -> None:
        qs = b"info_hash=%s&peer_id=%s&port=6881&uploaded=1&downloaded=2&left=3&event=started&numwant=7&compact=1&key=ab" % (
            q(IH), q(PID))
        a = wire.decode_announce_query(qs)
        self.assertEqual(a.info_hash, IH)
        self.assertEqual(a.peer_id, PID)
        self.assertEqual((a.port, a.uploaded, a.downloaded, a.left, a.event, a.numwant), (6881, 1, 2, 3, EVENT_STARTED, 7))
        self.assertTrue(a.compact)
        self.assertIsNone(a.ip)

    def test_defaults_and_options(self) -> None:
        qs = b"info_hash=%s&peer_id=%s&port=1&compact=0&no_peer_id=1&numwant=-1&event=paused&ip=1.2.3.4" % (q(IH), q(PID))
        a = wire.decode_announce_query(qs)
        self.assertEqual((a.left, a.numwant, a.compact, a.no_peer_id, a.event, a.ip), (None, None, False, True, EVENT_NONE, b"1.2.3.4"))
        for ev, code in ((b"completed", EVENT_COMPLETED), (b"stopped", EVENT_STOPPED), (b"", EVENT_NONE)):
            self.assertEqual(wire.decode_announce_query(qs + b"&event=" + ev).event, code)

    def test_rejections(self) -> None:
        good = b"info_hash=%s&peer_id=%s&port=6881" % (q(IH), q(PID))
        wire.decode_announce_query(good)
        for bad, why in (
            (good.replace(b"port=6881", b"port=0"), "port"),
            (good.replace(b"port=6881", b"port=65536"), "port"),
            (good.replace(b"port=6881", b"port=+1"), "port"),
            (good + b"&left=-1", "left"),
            (good + b"&left=1_0", "left"),
            (good + b"&event=bogus", "event"),
            (b"peer_id=%s&port=1" % q(PID), "info_hash"),
            (b"info_hash=%s&peer_id=%s&port=1" % (q(IH[:19]), q(PID)), "info_hash"),
            (b"info_hash=%s&peer_id=abc&port=1" % q(IH), "peer_id"),
        ):
            with self.assertRaises(DecodeError) as e:
                wire.decode_announce_query(bad)
            self.assertIn(why, str(e.exception))

    def test_scrape(self) -> None:
        self.assertEqual(wire.decode_scrape_query(b""), [])
        self.assertEqual(wire.decode_scrape_query(b"info_hash=%s&info_hash=%s" % (q(IH), q(b"a" * 20))), [IH, b"a" * 20])
        with self.assertRaises(DecodeError):
            wire.decode_scrape_query(b"info_hash=abc")
        with self.assertRaises(DecodeError):
            wire.decode_scrape_query(b"&".join([b"info_hash=" + q(IH)] * 75))

    @given(st.binary(max_size=40) | st.lists(st.sampled_from(
        [b"%", b"=", b"+", b" ", b"\t", b"\r", b"\n", b"0", b"a", b"F", b"g", b"\x00", b"\xff"]),
        max_size=14).map(b"".join))
    @settings(max_examples=1000)
    def test_unquote_is_unquote_to_bytes(self, value: bytes) -> None:
        from urllib.parse import unquote_to_bytes

        self.assertEqual(wire._unquote(value), unquote_to_bytes(value.replace(b"+", b" ")))

    @given(st.binary(max_size=300))
    @settings(max_examples=400)
    def test_garbage_query(self, data: bytes) -> None:
        for fn in (wire.decode_announce_query, wire.decode_scrape_query):
            try:
                fn(data)
            except DecodeError:
                pass

    @given(st.lists(st.tuples(st.sampled_from([b"info_hash", b"peer_id", b"port", b"left", b"uploaded",
                                                b"downloaded", b"event", b"numwant", b"compact", b"ip", b"x"]),
                              st.binary(max_size=25)), max_size=10))
    def test_garbage_fields(self, fields: list[tuple[bytes, bytes]]) -> None:
        qs = b"&".join(k + b"=" + q(v) for k, v in fields)
        try:
            a = wire.decode_announce_query(qs)
        except DecodeError:
            return
        self.assertEqual(len(a.info_hash), 20)
        self.assertTrue(0 < a.port < 65536)


class HttpReplyTests(SynchronousTestCase):
    def test_compact_reply_is_canonical_bencode(self) -> None:
        body = wire.encode_announce(3, 4, 5, 1800, 900, b"\x01" * 12, b"\x02" * 18, b"careful", b"tid")
        self.assertEqual(
            bencode.decode(body),
            {b"complete": 3, b"incomplete": 4, b"downloaded": 5, b"interval": 1800, b"min interval": 900,
             b"peers": b"\x01" * 12, b"peers6": b"\x02" * 18, b"tracker id": b"tid", b"warning message": b"careful"},
        )
        self.assertEqual(bencode.decode(wire.encode_announce(0, 0, 0, 1, 1, b""))[b"peers"], b"")

    def test_dict_reply(self) -> None:
        body = wire.encode_announce_dict(1, 0, 0, 10, 5, [(b"1.2.3.4", 80, b"x" * 20), (b"::1", 81, None)])
        peers = bencode.decode(body)[b"peers"]
        self.assertEqual(peers, [{b"ip": b"1.2.3.4", b"port": 80, b"peer id": b"x" * 20}, {b"ip": b"::1", b"port": 81}])

    def test_failure_and_scrape(self) -> None:
        self.assertEqual(bencode.decode(wire.encode_failure("nope")), {b"failure reason": b"nope"})
        body = wire.encode_scrape([(IH, 1, 2, 3)], 900)
        self.assertEqual(
            bencode.decode(body),
            {b"files": {IH: {b"complete": 1, b"downloaded": 2, b"incomplete": 3}},
             b"flags": {b"min_request_interval": 900}},
        )
