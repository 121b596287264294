"""The WebSocket tracker codec (:mod:`tgateway.tracker.ws_wire`): exact formats, round trips, and
"garbage never raises anything but DecodeError"."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tgateway.bencode import DecodeError
from tgateway.tracker import ws_wire
from tgateway.tracker.core import (
    EVENT_COMPLETED,
    EVENT_STARTED,
    MAX_WS_OFFERS,
)


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
    if isinstance(m, ws_wire.WsAnnounce):
        return (m.info_hash, m.info_hash_bytes, m.peer_id, m.seed, m.event,
                [json.loads(o) for o in m.offers], m.offer_ids,
                None if m.answer is None else json.loads(m.answer), m.to_peer_id, m.offer_id)
    if isinstance(m, ws_wire.WsScrape):
        return ("scrape", m.info_hashes)
    return m


class WsTests(SynchronousTestCase):
    def test_announce_with_offers(self) -> None:
        m = ws_wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, numwant=2, left=0,
                                  event="completed", offers=[{"offer": {"type": "offer", "sdp": "x"}, "offer_id": "\u00ff" * 20}]))
        assert isinstance(m, ws_wire.WsAnnounce)
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
        m = ws_wire.decode_ws(payload)
        assert isinstance(m, ws_wire.WsAnnounce)
        self.assertEqual(m.offers, [offer])
        answer = payload.replace(b'"offers":[{"offer":' + offer + b',"offer_id":"' + b"O" * 20 + b'"}]',
                                 b'"answer":' + offer + b',"offer_id":"' + b"O" * 20 + b'","to_peer_id":"' + b"Q" * 20 + b'"')
        m = ws_wire.decode_ws(answer)
        assert isinstance(m, ws_wire.WsAnnounce)
        self.assertEqual(m.answer, offer)

    def test_null_answer_is_an_announce_and_offers_past_the_limit_are_ignored(self) -> None:
        m = ws_wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, answer=None,
                                  event="started"))
        assert isinstance(m, ws_wire.WsAnnounce)
        self.assertEqual((m.answer, m.event), (None, EVENT_STARTED))
        offers: list[object] = [{"offer": {"n": n}, "offer_id": f"{n:020d}"} for n in range(MAX_WS_OFFERS + 5)]
        for more in (offers[MAX_WS_OFFERS:], [1, {"offer": 2}]):  # well-formed or not: ignored
            m = ws_wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20,
                                      offers=[*offers[:MAX_WS_OFFERS], *more]))
            assert isinstance(m, ws_wire.WsAnnounce)
            self.assertEqual((len(m.offers), len(m.offer_ids)), (MAX_WS_OFFERS, MAX_WS_OFFERS))
            self.assertEqual(json.loads(m.offers[-1]), {"n": MAX_WS_OFFERS - 1})
        with self.assertRaises(DecodeError):
            ws_wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, offers=[1, *offers]))

    def test_binary_strings_in_either_json_form(self) -> None:
        """Every latin-1 code point, as Python's json writes it (\\u00xx) and as JSON.stringify
        writes it (UTF-8), decodes to the same 20-character string."""
        for start in range(0, 256, 20):
            text = "".join(chr((start + i) % 256) for i in range(20))
            for ensure_ascii in (True, False):
                msg = {"action": "announce", "info_hash": text, "peer_id": text,
                       "offers": [{"offer": {"type": "offer"}, "offer_id": text}]}
                m = ws_wire.decode_ws(json.dumps(msg, ensure_ascii=ensure_ascii).encode("utf-8"))
                assert isinstance(m, ws_wire.WsAnnounce)
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
            ws_wire.decode_ws(good)
            for bad in (good.replace(b"\xc3\xa9", b"\xff"), good.replace(b"\xc3\xa9", b"\xed\xa0\x80"),
                        good.replace(b"\xc3\xa9", b"\xc3")):
                with self.assertRaises(DecodeError) as e:
                    ws_wire.decode_ws(bad)
                self.assertEqual(str(e.exception), "invalid JSON")

    def test_answer_and_left(self) -> None:
        m = ws_wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, answer={"type": "answer"},
                                  to_peer_id="Q" * 20, offer_id="O" * 20))
        assert isinstance(m, ws_wire.WsAnnounce)
        self.assertEqual((m.to_peer_id, m.offer_id), ("Q" * 20, "O" * 20))
        for left, seed in ((None, False), (5, False), (0, True), ("0", True), (0.0, True)):
            m = ws_wire.decode_ws(ws_msg(action="announce", info_hash=IHS, peer_id="P" * 20, left=left))
            assert isinstance(m, ws_wire.WsAnnounce)
            self.assertEqual(m.seed, seed, left)

    def test_scrape(self) -> None:
        m = ws_wire.decode_ws(ws_msg(action="scrape", info_hash=IHS))
        assert isinstance(m, ws_wire.WsScrape)
        self.assertEqual(m.info_hashes, [IHS])
        m = ws_wire.decode_ws(ws_msg(action="scrape"))
        assert isinstance(m, ws_wire.WsScrape)
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
                ws_wire.decode_ws(bad)

    @given(st.binary(max_size=300))
    def test_garbage_bytes(self, data: bytes) -> None:
        try:
            ws_wire.decode_ws(data)
        except DecodeError:
            pass

    @given(ws_messages())
    @settings(max_examples=400)
    def test_garbage_messages(self, msg: dict[str, object]) -> None:
        try:
            ws_wire.decode_ws(json.dumps(msg).encode())
        except DecodeError:
            pass

    @given(ws_messages())
    @settings(max_examples=600)
    def test_typed_decode_agrees_with_the_generic_one(self, msg: dict[str, object]) -> None:
        """The fast path (msgspec into a struct, offers kept raw) accepts, rejects and reads
        exactly what the generic decode and the plain checks do."""
        payload = json.dumps(msg).encode()
        try:
            fast: object = ws_wire.decode_ws(payload)
        except DecodeError as e:
            fast = ("rejected", str(e))
        try:
            slow: object = ws_wire._decode_ws_generic(payload)
        except DecodeError as e:
            slow = ("rejected", str(e))
        self.assertEqual(_view(fast), _view(slow))
