"""NIP-44 v2: every official vector (valid and invalid), plus properties."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tgateway.nostr import nip44
from tgateway.nostr.event import public_key_hex
from tgateway.nostr.nip44 import Nip44Error

from .vectors import vector_file

EXPECTED_SHA256 = "269ed0f69e4c192512cc779e78c555090cebc7c785b609e338a62afc3ce25040"


def _vectors() -> dict[str, Any]:
    raw = vector_file("nip44.vectors.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == EXPECTED_SHA256, "nip44 vectors file changed"
    v2: dict[str, Any] = json.loads(raw)["v2"]
    return v2


V = _vectors()


class ValidVectorTests(SynchronousTestCase):
    def test_get_conversation_key(self) -> None:
        cases = V["valid"]["get_conversation_key"]
        self.assertEqual(len(cases), 35)
        for c in cases:
            key = nip44.get_conversation_key(bytes.fromhex(c["sec1"]), c["pub2"])
            self.assertEqual(key.hex(), c["conversation_key"], c)

    def test_get_message_keys(self) -> None:
        ck = bytes.fromhex(V["valid"]["get_message_keys"]["conversation_key"])
        for c in V["valid"]["get_message_keys"]["keys"]:
            keys = nip44.get_message_keys(ck, bytes.fromhex(c["nonce"]))
            self.assertEqual(keys.chacha_key.hex(), c["chacha_key"])
            self.assertEqual(keys.chacha_nonce.hex(), c["chacha_nonce"])
            self.assertEqual(keys.hmac_key.hex(), c["hmac_key"])

    def test_calc_padded_len(self) -> None:
        for unpadded, padded in V["valid"]["calc_padded_len"]:
            self.assertEqual(nip44.calc_padded_len(unpadded), padded, unpadded)

    def test_encrypt_decrypt(self) -> None:
        for c in V["valid"]["encrypt_decrypt"]:
            sec1, sec2 = bytes.fromhex(c["sec1"]), bytes.fromhex(c["sec2"])
            ck1 = nip44.get_conversation_key(sec1, public_key_hex(sec2))
            ck2 = nip44.get_conversation_key(PrivateKey(sec2), public_key_hex(sec1))
            self.assertEqual(ck1.hex(), c["conversation_key"])
            self.assertEqual(ck2, ck1)
            payload = nip44.encrypt(c["plaintext"], ck1, bytes.fromhex(c["nonce"]))
            self.assertEqual(payload, c["payload"])
            self.assertEqual(nip44.decrypt(payload, ck2), c["plaintext"])

    def test_encrypt_decrypt_long_msg(self) -> None:
        for c in V["valid"]["encrypt_decrypt_long_msg"]:
            plaintext = c["pattern"] * c["repeat"]
            self.assertEqual(hashlib.sha256(plaintext.encode()).hexdigest(), c["plaintext_sha256"])
            ck = bytes.fromhex(c["conversation_key"])
            payload = nip44.encrypt(plaintext, ck, bytes.fromhex(c["nonce"]))
            self.assertEqual(hashlib.sha256(payload.encode()).hexdigest(), c["payload_sha256"])
            self.assertEqual(nip44.decrypt(payload, ck), plaintext)


class InvalidVectorTests(SynchronousTestCase):
    def test_encrypt_msg_lengths(self) -> None:
        ck = b"\x01" * 32
        for length in V["invalid"]["encrypt_msg_lengths"]:
            with self.assertRaises(Nip44Error):
                nip44.encrypt("a" * length, ck)

    def test_get_conversation_key(self) -> None:
        for c in V["invalid"]["get_conversation_key"]:
            with self.assertRaises(Nip44Error, msg=c["note"]):
                nip44.get_conversation_key(bytes.fromhex(c["sec1"]), c["pub2"])

    def test_decrypt(self) -> None:
        cases = V["invalid"]["decrypt"]
        self.assertEqual(len(cases), 12)
        for c in cases:
            with self.assertRaises(Nip44Error, msg=c["note"]) as cm:
                nip44.decrypt(c["payload"], bytes.fromhex(c["conversation_key"]))
            # the reason matches the vector's note (same wording as the reference code)
            note = c["note"].split(":")[0]
            self.assertIn(note, str(cm.exception), c["note"])


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=100, deadline=None)
    @given(st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=400))
    def test_round_trip(self, text: str) -> None:
        ck = nip44.get_conversation_key(b"\x01" * 32, public_key_hex(b"\x02" * 32))
        self.assertEqual(nip44.decrypt(nip44.encrypt(text, ck), ck), text)

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.hex()))
    def test_garbage_raises_only_nip44_error(self, payload: str) -> None:
        try:
            nip44.decrypt(payload, b"\x01" * 32)
        except Nip44Error:
            pass

    def test_bit_flips_detected(self) -> None:
        import base64

        ck = b"\x07" * 32
        raw = bytearray(base64.b64decode(nip44.encrypt("hello", ck)))
        for i in range(1, len(raw)):
            flipped = bytearray(raw)
            flipped[i] ^= 1
            with self.assertRaises(Nip44Error):
                nip44.decrypt(base64.b64encode(bytes(flipped)).decode(), ck)
