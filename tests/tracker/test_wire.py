"""Codecs: exact formats, round trips, and "garbage never raises anything but DecodeError"."""

from __future__ import annotations

import json
import struct
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
    MAX_WS_OFFERS,
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


class UdpTests(SynchronousTestCase):
    def test_connect(self) -> None:
        self.assertEqual(wire.decode_udp(struct.pack(">QII", 0x41727101980, 0, 77)), (0, 77))
        self.assertEqual(wire.encode_udp_connect(77, 5), struct.pack(">IIQ", 0, 77, 5))
        with self.assertRaises(wire.UdpDecodeError) as e:
            wire.decode_udp(struct.pack(">QII", 1234, 0, 77))
        self.assertIsNone(e.exception.transaction_id)

    def test_announce_with_bep41_options(self) -> None:
        pkt = struct.pack(">QII20s20sQQQIIIiH", 9, 1, 5, IH, PID, 1, 2, 3, 2, 0, 42, -1, 6881)
        req = wire.decode_udp(pkt + b"\x02\x05/abcd\x00")
        self.assertEqual(req, (1, 5, 9, IH, PID, 1, 2, 3, 2, 0, 42, -1, 6881))
        with self.assertRaises(wire.UdpDecodeError) as e:
            wire.decode_udp(pkt[:97])
        self.assertEqual(e.exception.transaction_id, 5)
        bad_event = struct.pack(">QII20s20sQQQIIIiH", 9, 1, 5, IH, PID, 1, 2, 3, 9, 0, 42, -1, 6881)
        with self.assertRaises(wire.UdpDecodeError):
            wire.decode_udp(bad_event)

    def test_reply_field_order(self) -> None:
        # announce: interval, leechers, seeders
        self.assertEqual(wire.encode_udp_announce(5, 1800, 7, 9, b"P" * 6),
                         struct.pack(">IIIII", 1, 5, 1800, 7, 9) + b"P" * 6)
        # scrape: seeders, completed, leechers
        self.assertEqual(wire.encode_udp_scrape(5, [(1, 2, 3)]), struct.pack(">IIIII", 2, 5, 1, 2, 3))
        self.assertEqual(wire.encode_udp_error(5, "x"), struct.pack(">II", 3, 5) + b"x")

    def test_scrape_limit(self) -> None:
        pkt = struct.pack(">QII", 9, 2, 5) + IH * 100 + b"xyz"
        req = wire.decode_udp(pkt)
        self.assertEqual(len(req[3]), 74)
        with self.assertRaises(wire.UdpDecodeError):
            wire.decode_udp(struct.pack(">QII", 9, 2, 5) + b"short")

    @given(st.binary(max_size=200))
    @settings(max_examples=500)
    def test_garbage(self, data: bytes) -> None:
        try:
            wire.decode_udp(data)
        except wire.UdpDecodeError:
            pass

    @given(st.integers(0, 3), st.binary(min_size=82, max_size=120))
    def test_garbage_with_valid_action(self, action: int, rest: bytes) -> None:
        data = rest[:8] + struct.pack(">I", action) + rest[8:]
        try:
            wire.decode_udp(data)
        except wire.UdpDecodeError:
            pass


def ws_msg(**kw: object) -> bytes:
    return json.dumps(kw).encode()


IHS = "".join(chr(b) for b in range(200, 220))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=25),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
binary20 = st.text(st.characters(max_codepoint=255), min_size=20, max_size=20)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
_FIELDS = ["action", "info_hash", "peer_id", "to_peer_id", "offer_id", "answer", "offers", "left",
           "event", "offer", "item_offer_id", "item"]


@st.composite
def ws_messages(draw: st.DrawFn) -> dict[str, object]:
    """A well-formed announce, answer or scrape, with up to three fields spoiled (removed, or
    replaced by any JSON value), so that every check is reached."""
    kind = draw(st.sampled_from(["announce", "answer", "scrape"]))
    msg: dict[str, object] = {"action": "scrape" if kind == "scrape" else "announce"}
    if kind == "scrape":
        msg["info_hash"] = draw(binary20 | st.lists(binary20, max_size=3) | st.none())
    else:
        msg["info_hash"] = draw(binary20)
        msg["peer_id"] = draw(binary20)
    if kind == "announce":
        msg["left"] = draw(st.integers(0, 10) | st.sampled_from(["0", "0.0", 1.5, None]))
        msg["event"] = draw(st.sampled_from(["started", "completed", "stopped", "update", None]))
        msg["offers"] = draw(st.lists(st.fixed_dictionaries({"offer": objects, "offer_id": binary20}), max_size=4))
    if kind == "answer":
        msg.update(answer=draw(objects), to_peer_id=draw(binary20), offer_id=draw(binary20))
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(_FIELDS))
        junk = draw(st.none() | json_values | st.text(min_size=19, max_size=21) | objects)
        items = msg.get("offers")
        if field in ("offer", "item_offer_id", "item"):
            if isinstance(items, list) and items:
                i = draw(st.integers(0, len(items) - 1))
                if field == "item":
                    items[i] = junk
                elif isinstance(items[i], dict):
                    items[i]["offer" if field == "offer" else "offer_id"] = junk
        elif draw(st.booleans()):
            msg.pop(field, None)
        else:
            msg[field] = junk
    return msg


def _view(m: object) -> object:
    """A decoded message as comparable values (offer and answer text parsed)."""
    if isinstance(m, wire.WsAnnounce):
        return (m.info_hash, m.info_hash_bytes, m.peer_id, m.seed, m.event,
                [json.loads(o) for o in m.offers], m.offer_ids,
                None if m.answer is None else json.loads(m.answer), m.to_peer_id, m.offer_id)
    if isinstance(m, wire.WsScrape):
        return ("scrape", m.info_hashes)
    return m


class WsTests(SynchronousTestCase):
    def test_announce_with_offers(self) -> None:
        m = wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, numwant=2, left=0,
                                  event="completed", offers=[{"offer": {"type": "offer", "sdp": "x"}, "offer_id": "\u00ff" * 20}]))
        assert isinstance(m, wire.WsAnnounce)
        self.assertEqual(m.info_hash_bytes, bytes(range(200, 220)))
        self.assertTrue(m.seed)
        self.assertEqual(m.event, EVENT_COMPLETED)
        # the offer object is kept as the JSON text the client sent, to be forwarded as it is
        self.assertEqual(m.offers, [b'{"type": "offer", "sdp": "x"}'])
        self.assertEqual(m.offer_ids, ["\u00ff" * 20])

    def test_offers_and_answers_are_kept_verbatim(self) -> None:
        offer = b'{ "sdp" : "v=0\\r\\n\xc3\xa9" ,"type":"offer","x":[1, 2.50, null]}'
        payload = (b'{"action":"announce","info_hash":"' + IHS.encode() + b'","peer_id":"' + b"P" * 20
                   + b'","offers":[{"offer":' + offer + b',"offer_id":"' + b"O" * 20 + b'"}]}')
        m = wire.decode_ws(payload)
        assert isinstance(m, wire.WsAnnounce)
        self.assertEqual(m.offers, [offer])
        answer = payload.replace(b'"offers":[{"offer":' + offer + b',"offer_id":"' + b"O" * 20 + b'"}]',
                                 b'"answer":' + offer + b',"offer_id":"' + b"O" * 20 + b'","to_peer_id":"' + b"Q" * 20 + b'"')
        m = wire.decode_ws(answer)
        assert isinstance(m, wire.WsAnnounce)
        self.assertEqual(m.answer, offer)

    def test_null_answer_is_an_announce_and_offers_past_the_limit_are_ignored(self) -> None:
        m = wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, answer=None,
                                  event="started"))
        assert isinstance(m, wire.WsAnnounce)
        self.assertEqual((m.answer, m.event), (None, EVENT_STARTED))
        offers: list[object] = [{"offer": {"n": n}, "offer_id": f"{n:020d}"} for n in range(MAX_WS_OFFERS + 5)]
        for more in (offers[MAX_WS_OFFERS:], [1, {"offer": 2}]):  # well-formed or not: ignored
            m = wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20,
                                      offers=[*offers[:MAX_WS_OFFERS], *more]))
            assert isinstance(m, wire.WsAnnounce)
            self.assertEqual((len(m.offers), len(m.offer_ids)), (MAX_WS_OFFERS, MAX_WS_OFFERS))
            self.assertEqual(json.loads(m.offers[-1]), {"n": MAX_WS_OFFERS - 1})
        with self.assertRaises(DecodeError):
            wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, offers=[1, *offers]))

    def test_binary_strings_in_either_json_form(self) -> None:
        """Every latin-1 code point, as Python's json writes it (\\u00xx) and as JSON.stringify
        writes it (UTF-8), decodes to the same 20-character string."""
        for start in range(0, 256, 20):
            text = "".join(chr((start + i) % 256) for i in range(20))
            for ensure_ascii in (True, False):
                msg = {"action": "announce", "info_hash": text, "peer_id": text,
                       "offers": [{"offer": {"type": "offer"}, "offer_id": text}]}
                m = wire.decode_ws(json.dumps(msg, ensure_ascii=ensure_ascii).encode("utf-8"))
                assert isinstance(m, wire.WsAnnounce)
                self.assertEqual((m.info_hash, m.peer_id, m.offer_ids), (text, text, [text]))
                self.assertEqual(m.info_hash_bytes, text.encode("latin-1"))

    def test_invalid_utf8_in_forwarded_text_is_rejected(self) -> None:
        """Offer and answer text is forwarded in text frames, so it must be UTF-8 (msgspec does
        not check what it keeps raw)."""
        offer = {"action": "announce", "info_hash": IHS, "peer_id": "P" * 20,
                 "offers": [{"offer": {"sdp": "\u00e9"}, "offer_id": "O" * 20}]}
        answer = {"action": "announce", "info_hash": IHS, "peer_id": "P" * 20, "offer_id": "O" * 20,
                  "to_peer_id": "Q" * 20, "answer": {"sdp": "\u00e9"}}
        for msg in (offer, answer):
            good = json.dumps(msg, ensure_ascii=False).encode("utf-8")
            wire.decode_ws(good)
            for bad in (good.replace(b"\xc3\xa9", b"\xff"), good.replace(b"\xc3\xa9", b"\xed\xa0\x80"),
                        good.replace(b"\xc3\xa9", b"\xc3")):
                with self.assertRaises(DecodeError) as e:
                    wire.decode_ws(bad)
                self.assertEqual(str(e.exception), "invalid JSON")

    def test_answer_and_left(self) -> None:
        m = wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, answer={"type": "answer"},
                                  to_peer_id="Q" * 20, offer_id="O" * 20))
        assert isinstance(m, wire.WsAnnounce)
        self.assertEqual((m.to_peer_id, m.offer_id), ("Q" * 20, "O" * 20))
        for left, seed in ((None, False), (5, False), (0, True), ("0", True), (0.0, True)):
            m = wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, left=left))
            assert isinstance(m, wire.WsAnnounce)
            self.assertEqual(m.seed, seed, left)

    def test_scrape(self) -> None:
        m = wire.decode_ws(ws_msg(action="scrape", info_hash=IHS))
        assert isinstance(m, wire.WsScrape)
        self.assertEqual(m.info_hashes, [IHS])
        m = wire.decode_ws(ws_msg(action="scrape"))
        assert isinstance(m, wire.WsScrape)
        self.assertEqual(m.info_hashes, [])

    def test_rejections(self) -> None:
        for bad in (
            b"not json", b"[1]", b"\xff\xfe", ws_msg(action="x"),
            ws_msg(action="announce", info_hash="\u0100" * 20, peer_id="P" * 20),
            ws_msg(action="announce", info_hash=IHS, peer_id="P" * 19),
            ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, event="bogus"),
            ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, offers={}),
            ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, offers=[{"offer": 1, "offer_id": "O" * 20}]),
            ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, answer={}, to_peer_id="x"),
            ws_msg(action="scrape", info_hash=[1]),
            b"[" * 100000,
        ):
            with self.assertRaises(DecodeError):
                wire.decode_ws(bad)

    @given(st.binary(max_size=300))
    def test_garbage_bytes(self, data: bytes) -> None:
        try:
            wire.decode_ws(data)
        except DecodeError:
            pass

    @given(ws_messages())
    @settings(max_examples=400)
    def test_garbage_messages(self, msg: dict[str, object]) -> None:
        try:
            wire.decode_ws(json.dumps(msg).encode())
        except DecodeError:
            pass

    @given(ws_messages())
    @settings(max_examples=600)
    def test_typed_decode_agrees_with_the_generic_one(self, msg: dict[str, object]) -> None:
        """The fast path (msgspec into a struct, offers kept raw) accepts, rejects and reads
        exactly what the generic decode and the plain checks do."""
        payload = json.dumps(msg).encode()
        try:
            fast: object = wire.decode_ws(payload)
        except DecodeError as e:
            fast = ("rejected", str(e))
        try:
            slow: object = wire._decode_ws_generic(payload)
        except DecodeError as e:
            slow = ("rejected", str(e))
        self.assertEqual(_view(fast), _view(slow))
