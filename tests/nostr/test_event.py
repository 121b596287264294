"""NIP-01 events: BIP-340 vectors, canonical serialization, and the strict validator."""

from __future__ import annotations

import copy
import csv
import json

from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tgateway.nostr.event import (
    Event,
    EventError,
    EventTemplate,
    compute_id,
    parse_event,
    parse_event_json,
    public_key_hex,
    schnorr_sign,
    schnorr_verify,
    serialize,
    sign,
    verify,
)

from .vectors import vector_file

SECRET = bytes.fromhex("b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef")


def _bip340_rows() -> list[dict[str, str]]:
    with open(vector_file("bip340-test-vectors.csv"), newline="") as f:
        return list(csv.DictReader(f))


class Bip340VectorTests(SynchronousTestCase):
    def test_all_vectors(self) -> None:
        rows = _bip340_rows()
        self.assertGreaterEqual(len(rows), 19)
        for row in rows:
            index = row["index"]
            pubkey = bytes.fromhex(row["public key"])
            message = bytes.fromhex(row["message"])
            signature = bytes.fromhex(row["signature"])
            expected = row["verification result"] == "TRUE"
            if row["secret key"]:
                secret = bytes.fromhex(row["secret key"])
                aux = bytes.fromhex(row["aux_rand"])
                self.assertEqual(public_key_hex(secret), row["public key"].lower(), index)
                self.assertEqual(
                    schnorr_sign(message, secret, aux).hex(), row["signature"].lower(), index
                )
            self.assertEqual(
                schnorr_verify(message, pubkey, signature), expected, f"vector {index}"
            )

    def test_32_byte_vectors_match_coincurve_sign_schnorr(self) -> None:
        # the event path signs 32-byte ids: coincurve's own API must agree with schnorr_sign
        for row in _bip340_rows():
            if row["secret key"] and len(row["message"]) == 64:
                key = PrivateKey(bytes.fromhex(row["secret key"]))
                sig = key.sign_schnorr(
                    bytes.fromhex(row["message"]), bytes.fromhex(row["aux_rand"])
                )
                self.assertEqual(sig.hex(), row["signature"].lower())


def _signed(**overrides: object) -> Event:
    fields: dict[str, object] = dict(
        kind=1, created_at=1700000000, tags=[["t", "x"]], content="hello"
    )
    fields.update(overrides)
    return sign(EventTemplate(**fields), SECRET)  # type: ignore[arg-type]


class SerializationTests(SynchronousTestCase):
    def test_known_nostr_tools_id(self) -> None:
        # the NIP-01 example shape: escapes as JSON.stringify, no whitespace, raw UTF-8
        data = serialize("ab" * 32, 1, 1, [["e", "x"]], 'a"b\\c\n\t\r\b\f\x01\x7fé€😀/')
        self.assertEqual(
            data,
            (
                '[0,"'
                + "ab" * 32
                + '",1,1,[["e","x"]],"a\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\x7fé€😀/"]'
            ).encode(),
        )

    def test_lone_surrogate_refused(self) -> None:
        with self.assertRaises(EventError):
            serialize("ab" * 32, 1, 1, [], "\ud800")

    def test_sign_and_verify(self) -> None:
        event = _signed()
        self.assertEqual(event.pubkey, public_key_hex(SECRET))
        self.assertEqual(event.id, compute_id(event.pubkey, 1700000000, 1, [["t", "x"]], "hello"))
        self.assertTrue(verify(event))
        self.assertEqual(parse_event(event.to_json()), event)
        self.assertEqual(parse_event_json(event.dumps()), event)
        self.assertEqual(event.first_tag("t"), "x")
        self.assertIsNone(event.first_tag("p"))

    def test_sign_accepts_coincurve_key_and_aux(self) -> None:
        a = sign(EventTemplate(kind=1, created_at=5), PrivateKey(SECRET), aux_rand=b"\0" * 32)
        b = sign(EventTemplate(kind=1, created_at=5), SECRET, aux_rand=b"\0" * 32)
        self.assertEqual(a, b)

    def test_verify_rejects_tampering(self) -> None:
        event = _signed()
        for change in (
            dict(content="other"),
            dict(kind=2),
            dict(created_at=1),
            dict(tags=(("t", "y"),)),
            dict(sig="00" * 64),
            dict(pubkey=public_key_hex(b"\x01" * 32)),
            dict(id="00" * 32),
        ):
            fields = {**event.__dict__, **change}
            self.assertFalse(verify(Event(**fields)), change)

    def test_template_tags_must_be_lists(self) -> None:
        for bad in ("tx", ["t", "x"], [1]):
            with self.assertRaises(EventError):
                EventTemplate(kind=1, created_at=1, tags=bad)  # type: ignore[arg-type]

    def test_template_validated(self) -> None:
        for bad in (dict(kind=-1), dict(kind=65536), dict(created_at=-1), dict(created_at=True)):
            with self.assertRaises(EventError):
                _signed(**bad)


class ParseEventTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.good = _signed().to_json()

    def assertRejected(self, obj: object, words: str) -> None:
        with self.assertRaises(EventError) as cm:
            parse_event(obj)
        self.assertIn(words, cm.exception.message)

    def with_(self, **changes: object) -> dict[str, object]:
        obj = copy.deepcopy(self.good)
        obj.update(changes)
        return obj

    def test_not_object(self) -> None:
        self.assertRejected([1], "JSON object")
        self.assertRejected(None, "JSON object")

    def test_missing_fields(self) -> None:
        for name in ("id", "pubkey", "created_at", "kind", "tags", "content", "sig"):
            obj = copy.deepcopy(self.good)
            del obj[name]
            self.assertRejected(obj, name)

    def test_hex_fields(self) -> None:
        self.assertRejected(self.with_(id=self.good["id"].upper()), "id must be")
        self.assertRejected(self.with_(id=self.good["id"][:-1]), "id must be")
        self.assertRejected(self.with_(id=self.good["id"] + "\n"), "id must be")
        self.assertRejected(self.with_(pubkey=self.good["pubkey"].upper()), "pubkey")
        self.assertRejected(self.with_(pubkey=1), "pubkey")
        self.assertRejected(self.with_(sig=self.good["sig"][:126]), "sig must be")
        self.assertRejected(self.with_(sig=self.good["sig"].upper()), "sig must be")

    def test_integers(self) -> None:
        for value in ("1700000000", 1700000000.0, True, None, -1, 2**53):
            self.assertRejected(self.with_(created_at=value), "created_at")
        for value in ("1", 1.0, False, -1, 65536):
            self.assertRejected(self.with_(kind=value), "kind")

    def test_tags_and_content(self) -> None:
        self.assertRejected(self.with_(tags={}), "tags must be a list")
        self.assertRejected(self.with_(tags=["t"]), "every tag must be a list")
        self.assertRejected(self.with_(tags=[["t", 1]]), "tag item")
        self.assertRejected(self.with_(tags=[["t", None]]), "tag item")
        self.assertRejected(self.with_(content=None), "content")
        self.assertRejected(self.with_(content=["x"]), "content")

    def test_id_and_signature(self) -> None:
        self.assertRejected(self.with_(content="changed"), "id does not match")
        other = _signed(content="other")
        self.assertRejected(self.with_(sig=other.sig), "bad signature")
        # a pubkey that is not on the curve
        forged = self.with_(pubkey="ff" * 32)
        forged["id"] = compute_id("ff" * 32, 1700000000, 1, [["t", "x"]], "hello")
        self.assertRejected(forged, "bad signature")

    def test_bad_json(self) -> None:
        for text in ("", "{", "[1,", "nan", b"\xff"):
            with self.assertRaises(EventError):
                parse_event_json(text)
        with self.assertRaises(EventError):
            parse_event_json("[" * 100000 + "]" * 100000)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_field_values = st.one_of(
    _json,
    st.text(alphabet="0123456789abcdefABCDEF", min_size=62, max_size=130),
    st.integers(min_value=-(2**70), max_value=2**70),
)


class ValidatorPropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(_json)
    def test_garbage_raises_only_event_error(self, obj: object) -> None:
        try:
            parse_event(obj)
        except EventError:
            pass

    @settings(max_examples=300, deadline=None)
    @given(
        st.sampled_from(["id", "pubkey", "created_at", "kind", "tags", "content", "sig"]),
        _field_values,
    )
    def test_any_changed_field_is_rejected(self, name: str, value: object) -> None:
        good = _signed().to_json()
        if good[name] == value:
            return
        obj = dict(good, **{name: value})
        with self.assertRaises(EventError):
            parse_event(obj)

    @settings(max_examples=100, deadline=None)
    @given(
        kind=st.integers(0, 65535),
        created_at=st.integers(0, 2**53 - 1),
        tags=st.lists(
            st.lists(st.text(st.characters(blacklist_categories=["Cs"])), max_size=3), max_size=3
        ),
        content=st.text(st.characters(blacklist_categories=["Cs"])),
    )
    def test_round_trip(
        self, kind: int, created_at: int, tags: list[list[str]], content: str
    ) -> None:
        event = sign(
            EventTemplate(kind=kind, created_at=created_at, tags=tags, content=content), SECRET
        )
        wire = json.loads(event.dumps())
        self.assertEqual(parse_event(wire), event)
