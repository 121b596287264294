"""Interop with nostr-tools (node): the same ids, signatures both ways, NIP-19 and NIP-44."""

from __future__ import annotations

import hashlib
import time

import pytest
from twisted.trial.unittest import SynchronousTestCase

from tests.nostr.nodejs import nostr_tools
from tgateway.errors import Unauthorized
from tgateway.nostr import nip44
from tgateway.nostr.event import EventTemplate, parse_event, public_key_hex, sign
from tgateway.nostr.keys import (
    ProfilePointer,
    decode,
    note_encode,
    nprofile_encode,
    npub_encode,
    nsec_encode,
)
from tgateway.nostr.login import ChallengeStore, LoginBinding, verify_login_event
from tgateway.nostr.nip98 import ReplayCache, verify_http_auth

pytestmark = pytest.mark.integration

SECRET = "0340034003400340034003400340034003400340034003400340034003400340"
TRICKY = [
    "",
    "plain",
    'quote " backslash \\ slash /',
    "controls \n\r\t\b\f \x00\x01\x1f\x7f",
    "unicode é € 😀 \u2028\u2029 \ufeff",
    "<script>&amp;</script>",
]


class NostrToolsEventTests(SynchronousTestCase):
    def test_nostr_tools_events_verify_here(self) -> None:
        templates = [
            {"kind": k, "created_at": 1700000000 + i, "tags": [["t", c], ["x", c, c]], "content": c}
            for i, (k, c) in enumerate(zip([0, 1, 2003, 22242, 27235, 65535], TRICKY, strict=True))
        ]
        answer = nostr_tools({"secret": SECRET, "sign": templates})
        self.assertEqual(answer["pubkey"], public_key_hex(bytes.fromhex(SECRET)))
        for signed in answer["signed"]:
            event = parse_event(signed)
            self.assertEqual(event.id, signed["id"])

    def test_our_events_verify_in_nostr_tools(self) -> None:
        events = [
            sign(
                EventTemplate(kind=1, created_at=1700000000, tags=(("t", c),), content=c),
                bytes.fromhex(SECRET),
            )
            for c in TRICKY
        ]
        wire = [e.to_json() for e in events]
        forged = dict(wire[1], content="changed")
        answer = nostr_tools({"verify": wire + [forged], "hash": wire})
        self.assertEqual(answer["verified"], [True] * len(wire) + [False])
        self.assertEqual(answer["hashes"], [e.id for e in events])


class NostrToolsNip19Tests(SynchronousTestCase):
    def test_same_encodings_both_ways(self) -> None:
        pub = public_key_hex(bytes.fromhex(SECRET))
        pointer = ProfilePointer(pub, ("wss://relay.example", "ws://127.0.0.1:7777"))
        ours = [npub_encode(pub), nsec_encode(bytes.fromhex(SECRET)), note_encode("cd" * 32)]
        ours.append(nprofile_encode(pointer))
        answer = nostr_tools(
            {
                "nip19": {
                    "npub": pub,
                    "nsec": SECRET,
                    "note": "cd" * 32,
                    "nprofile": {"pubkey": pub, "relays": list(pointer.relays)},
                    "decode": ours,
                }
            }
        )["nip19"]
        self.assertEqual([answer["npub"], answer["nsec"], answer["note"]], ours[:3])
        # TLV order differs (nostr-tools writes the relays first); both decode the same
        self.assertEqual(decode(answer["nprofile"]), decode(ours[3]))
        self.assertEqual(
            answer["decoded"],
            [
                {"type": "npub", "data": pub},
                {"type": "nsec", "data": SECRET},
                {"type": "note", "data": "cd" * 32},
                {"type": "nprofile", "data": {"pubkey": pub, "relays": list(pointer.relays)}},
            ],
        )
        self.assertEqual(decode(answer["nprofile"]), ("nprofile", pointer))


class NostrToolsNip44Tests(SynchronousTestCase):
    def test_encrypt_both_ways(self) -> None:
        sec1, sec2 = bytes.fromhex(SECRET), b"\x05" * 32
        ck = nip44.get_conversation_key(sec2, public_key_hex(sec1))
        texts = ["hi", "é€😀 " * 50, "x" * 65535]
        ours = [nip44.encrypt(t, ck) for t in texts]
        answer = nostr_tools(
            {
                "nip44": [
                    {"sec1": SECRET, "pub2": public_key_hex(sec2), "plaintext": t, "payload": p}
                    for t, p in zip(texts, ours, strict=True)
                ]
            }
        )["nip44"]
        for text, result in zip(texts, answer, strict=True):
            self.assertEqual(result["conversation_key"], ck.hex())
            self.assertEqual(result["decrypted"], text)
            self.assertEqual(nip44.decrypt(result["encrypted"], ck), text)


class NostrToolsNip98Tests(SynchronousTestCase):
    def test_get_token_accepted_and_checked(self) -> None:
        url = "http://127.0.0.1:9877/api/upload?x=1"
        answer = nostr_tools(
            {
                "secret": SECRET,
                "nip98": [
                    {"url": url, "method": "GET"},
                    {"url": url, "method": "POST", "payload": {"name": "é", "n": 1}},
                ],
            }
        )["nip98"]
        now = time.time()
        replay = ReplayCache()
        get = verify_http_auth(answer[0]["token"], method="GET", url=url, now=now, replay=replay)
        self.assertEqual(get.pubkey, public_key_hex(bytes.fromhex(SECRET)))
        with self.assertRaises(Unauthorized):  # replay
            verify_http_auth(answer[0]["token"], method="GET", url=url, now=now, replay=replay)
        body_hash = hashlib.sha256(answer[1]["body"].encode()).hexdigest()
        verify_http_auth(
            answer[1]["token"],
            method="POST",
            url=url,
            now=now,
            replay=replay,
            body_sha256=body_hash,
        )
        for kw in (
            dict(method="PUT", url=url, body_sha256=body_hash),
            dict(method="POST", url=url + "&y=2", body_sha256=body_hash),
            dict(method="POST", url=url, body_sha256="00" * 32),
        ):
            with self.assertRaises(Unauthorized):
                verify_http_auth(answer[1]["token"], now=now, replay=None, **kw)  # type: ignore[arg-type]
        with self.assertRaises(Unauthorized):  # stale
            verify_http_auth(answer[1]["token"], method="POST", url=url, now=now + 120, replay=None)


class NostrToolsLoginTests(SynchronousTestCase):
    def test_finalize_event_logins(self) -> None:
        store = ChallengeStore()
        now = time.time()
        good, other, stale = (store.issue(now).value for _ in range(3))
        gateway = LoginBinding("https://gw.example")
        relay = ["relay", gateway.base_url]
        u = ["u", gateway.login_url]
        templates = [
            {"kind": 22242, "created_at": int(now), "tags": [relay, ["challenge", good]], "content": ""},
            {"kind": 1, "created_at": int(now), "tags": [relay, ["challenge", other]], "content": ""},
            {
                "kind": 27235,
                "created_at": int(now) - 3600,
                "tags": [u, ["challenge", stale]],
                "content": "",
            },
            {"kind": 27235, "created_at": int(now), "tags": [u, ["challenge", other]], "content": ""},
        ]
        signed = nostr_tools({"secret": SECRET, "sign": templates})["signed"]
        event = verify_login_event(signed[0], challenges=store, binding=gateway, now=now)
        self.assertEqual(event.pubkey, public_key_hex(bytes.fromhex(SECRET)))
        for obj, words in (
            (signed[0], "already used"),
            (signed[1], "kind"),
            (signed[2], "created_at"),
            (dict(signed[3], sig=signed[0]["sig"]), "bad signature"),
            (dict(signed[3], pubkey=signed[3]["pubkey"][::-1]), "id does not match"),
        ):
            with self.assertRaises(Unauthorized) as cm:
                verify_login_event(obj, challenges=store, binding=gateway, now=now)
            self.assertIn(words, cm.exception.message)
        verify_login_event(signed[3], challenges=store, binding=gateway, now=now)
