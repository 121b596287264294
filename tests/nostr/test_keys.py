"""NIP-19 bech32 entities and the gateway key file."""

from __future__ import annotations

import os
import stat
import tempfile

from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tgateway.config import ConfigError
from tgateway.nostr.keys import (
    KEY_FILE,
    Nip19Error,
    ProfilePointer,
    bech32_decode,
    bech32_encode,
    decode,
    load_or_create_key,
    note_encode,
    nprofile_encode,
    npub_encode,
    nsec_encode,
    parse_private_key,
    parse_public_key,
    public_key_of,
)

# the examples of NIP-19
NPUB = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg"
NPUB_HEX = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
NSEC = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"
NSEC_HEX = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
NPROFILE = (
    "nprofile1qqsrhuxx8l9ex335q7he0f09aej04zpazpl0ne2cgukyawd24mayt8gpp4mhxue69uhhytnc9e3k7mgpz4"
    "mhxue69uhkg6nzv9ejuumpv34kytnrdaksjlyr9p"
)
NPROFILE_POINTER = ProfilePointer(
    "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d",
    ("wss://r.x.com", "wss://djbas.sadkb.com"),
)


class Nip19Tests(SynchronousTestCase):
    def test_spec_examples(self) -> None:
        self.assertEqual(decode(NPUB), ("npub", NPUB_HEX))
        self.assertEqual(npub_encode(NPUB_HEX), NPUB)
        self.assertEqual(decode(NSEC), ("nsec", bytes.fromhex(NSEC_HEX)))
        self.assertEqual(nsec_encode(bytes.fromhex(NSEC_HEX)), NSEC)
        self.assertEqual(nsec_encode(PrivateKey(bytes.fromhex(NSEC_HEX))), NSEC)
        self.assertEqual(decode(NPROFILE), ("nprofile", NPROFILE_POINTER))
        self.assertEqual(nprofile_encode(NPROFILE_POINTER), NPROFILE)
        self.assertEqual(decode("nostr:" + NPUB), ("npub", NPUB_HEX))
        self.assertEqual(decode(NPUB.upper()), ("npub", NPUB_HEX))

    def test_note(self) -> None:
        note = note_encode("ab" * 32)
        self.assertTrue(note.startswith("note1"))
        self.assertEqual(decode(note), ("note", "ab" * 32))

    def test_parse_helpers(self) -> None:
        self.assertEqual(parse_public_key(NPUB), NPUB_HEX)
        self.assertEqual(parse_public_key(NPUB_HEX.upper()), NPUB_HEX)
        self.assertEqual(parse_public_key(NPROFILE), NPROFILE_POINTER.pubkey)
        self.assertEqual(parse_private_key(NSEC).secret.hex(), NSEC_HEX)
        self.assertEqual(parse_private_key(" " + NSEC_HEX + "\n").secret.hex(), NSEC_HEX)
        self.assertEqual(
            public_key_of(parse_private_key(NSEC_HEX)),
            public_key_of(PrivateKey(bytes.fromhex(NSEC_HEX))),
        )
        for bad in (NSEC, "ff" * 32, "", "npub1"):
            with self.assertRaises(Nip19Error):
                parse_public_key(bad)
        for bad in (NPUB, "00" * 32, "ff" * 32, "xyz", "0" * 63):
            with self.assertRaises(Nip19Error):
                parse_private_key(bad)

    def test_malformed(self) -> None:
        bad = [
            NPUB[:-1] + ("q" if NPUB[-1] != "q" else "p"),  # checksum
            NPUB[:10] + NPUB[10:].upper(),  # mixed case
            "npub1",
            "1qqqqqq",
            NPUB.replace("npub1", "npub1b"),  # 'b' is not in the charset
            bech32_encode("npub", b"\x01" * 31),  # wrong length
            bech32_encode("nsec", b"\x00" * 32),  # out of range
            bech32_encode("nevent", b"\x00" * 32),  # unsupported here
            bech32_encode("nprofile", b"\x01\x02ab"),  # no pubkey
            bech32_encode("nprofile", b"\x00\x20" + b"\x01" * 10),  # truncated
            "x" * 6000,
        ]
        for text in bad:
            with self.assertRaises(Nip19Error, msg=text):
                decode(text)

    @settings(max_examples=200, deadline=None)
    @given(st.text(alphabet="qpzry9x8gf2tvdw0s3jn54khce6mua7l1npubsecQPZ", max_size=120))
    def test_garbage_raises_only_nip19_error(self, text: str) -> None:
        try:
            decode(text)
        except Nip19Error:
            pass

    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=200), st.sampled_from(["npub", "note", "x", "nprofile"]))
    def test_bech32_round_trip(self, data: bytes, hrp: str) -> None:
        self.assertEqual(bech32_decode(bech32_encode(hrp, data)), (hrp, data))


class KeyFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.data_dir = os.path.join(self.tmp.name, "data")

    def test_config_key_wins(self) -> None:
        self.assertEqual(load_or_create_key(NSEC, self.data_dir).secret.hex(), NSEC_HEX)
        self.assertEqual(load_or_create_key(NSEC_HEX, self.data_dir).secret.hex(), NSEC_HEX)
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, KEY_FILE)))

    def test_bad_config_key(self) -> None:
        for bad in ("nope", NPUB, "00" * 32, NSEC_HEX[:-2]):
            with self.assertRaises(ConfigError) as cm:
                load_or_create_key(bad, self.data_dir)
            self.assertIn("nostr.private_key", str(cm.exception))
            self.assertNotIn(NSEC_HEX[:-2], str(cm.exception))

    def test_generated_once_and_kept(self) -> None:
        first = load_or_create_key("", self.data_dir)
        path = os.path.join(self.data_dir, KEY_FILE)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(open(path).read().strip(), first.secret.hex())
        second = load_or_create_key("  ", self.data_dir)
        self.assertEqual(second.secret, first.secret)
        self.assertEqual(os.listdir(self.data_dir), [KEY_FILE])

    def test_loose_mode_is_tightened(self) -> None:
        key = load_or_create_key("", self.data_dir)
        path = os.path.join(self.data_dir, KEY_FILE)
        os.chmod(path, 0o644)
        self.assertEqual(load_or_create_key("", self.data_dir).secret, key.secret)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_existing_nsec_file(self) -> None:
        os.makedirs(self.data_dir)
        path = os.path.join(self.data_dir, KEY_FILE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, NSEC.encode())
        os.close(fd)
        self.assertEqual(load_or_create_key("", self.data_dir).secret.hex(), NSEC_HEX)

    def test_corrupt_file(self) -> None:
        os.makedirs(self.data_dir)
        path = os.path.join(self.data_dir, KEY_FILE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"garbage\xff")
        os.close(fd)
        with self.assertRaises(ConfigError) as cm:
            load_or_create_key("", self.data_dir)
        self.assertIn("nostr.private_key", str(cm.exception))
        self.assertIn(KEY_FILE, str(cm.exception))
