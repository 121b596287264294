"""NIP-44 version 2: encrypted payloads between two Nostr keys.

- conversation key = HKDF-extract(salt=b"nip44-v2", IKM=x coordinate of ECDH(sec1, pub2)),
  where pub2 is the x-only key lifted to the point with even y;
- per message: a random 32-byte nonce; HKDF-expand(PRK=conversation key, info=nonce, L=76) gives
  chacha_key (32), chacha_nonce (12) and hmac_key (32);
- plaintext (1..65535 UTF-8 bytes) is prefixed with its length (u16 big-endian) and zero-padded
  to :func:`calc_padded_len`, encrypted with ChaCha20 (RFC 8439, counter 0; ``cryptography``
  takes a 16-byte nonce = 4-byte little-endian counter + the 12-byte nonce), authenticated with
  HMAC-SHA256(hmac_key, nonce || ciphertext);
- payload = base64(0x02 || nonce || ciphertext || mac).

Every failure raises :class:`Nip44Error` with the reason; MACs are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

__all__ = [
    "MessageKeys",
    "Nip44Error",
    "calc_padded_len",
    "decrypt",
    "encrypt",
    "get_conversation_key",
    "get_message_keys",
    "pad",
    "unpad",
]

VERSION = 2
MIN_PLAINTEXT = 1
MAX_PLAINTEXT = 65535
_SALT = b"nip44-v2"


class Nip44Error(ValueError):
    """A NIP-44 key, plaintext or payload is invalid; the message says which check failed."""


@dataclass(frozen=True)
class MessageKeys:
    chacha_key: bytes
    chacha_nonce: bytes
    hmac_key: bytes


def _secret_bytes(private_key: PrivateKey | bytes) -> bytes:
    return private_key.secret if isinstance(private_key, PrivateKey) else private_key


def get_conversation_key(private_key: PrivateKey | bytes, public_key_hex: str) -> bytes:
    """The 32-byte conversation key shared by ``private_key`` and the x-only ``public_key_hex``.

    Raises :class:`Nip44Error` for an invalid secret (0, >= n) or a public key off the curve.
    """
    secret = _secret_bytes(private_key)
    if len(secret) != 32:
        raise Nip44Error("invalid secret key length")
    try:
        pub_x = bytes.fromhex(public_key_hex)
    except (ValueError, TypeError):
        raise Nip44Error("public key is not hex") from None
    if len(pub_x) != 32:
        raise Nip44Error("public key must be 32 bytes")
    try:
        PrivateKey(secret)
    except ValueError:
        raise Nip44Error("invalid secret key") from None
    try:
        point = PublicKey(b"\x02" + pub_x)
    except ValueError:
        raise Nip44Error("public key is not on the curve") from None
    try:
        shared = point.multiply(secret).format(compressed=True)[1:]
    except ValueError:
        raise Nip44Error("ECDH failed") from None
    return hmac.new(_SALT, shared, hashlib.sha256).digest()


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def get_message_keys(conversation_key: bytes, nonce: bytes) -> MessageKeys:
    """The ChaCha20 key and nonce and the HMAC key for one message."""
    if len(conversation_key) != 32:
        raise Nip44Error("invalid conversation key length")
    if len(nonce) != 32:
        raise Nip44Error("invalid nonce length")
    keys = _hkdf_expand(conversation_key, nonce, 76)
    return MessageKeys(keys[0:32], keys[32:44], keys[44:76])


def calc_padded_len(unpadded_len: int) -> int:
    """The padded length for a plaintext of ``unpadded_len`` bytes (without the 2-byte prefix)."""
    if unpadded_len <= 0:
        raise Nip44Error("expected a positive length")
    if unpadded_len <= 32:
        return 32
    next_power = 1 << (unpadded_len - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((unpadded_len - 1) // chunk + 1)


def pad(plaintext: str) -> bytes:
    """u16 big-endian length || UTF-8 plaintext || zeros. Raises :class:`Nip44Error`."""
    raw = plaintext.encode("utf-8")
    if not MIN_PLAINTEXT <= len(raw) <= MAX_PLAINTEXT:
        raise Nip44Error("invalid plaintext length: must be 1 to 65535 bytes")
    return struct.pack(">H", len(raw)) + raw + bytes(calc_padded_len(len(raw)) - len(raw))


def unpad(padded: bytes) -> str:
    """The plaintext inside ``padded``. Raises :class:`Nip44Error` on any inconsistency."""
    if len(padded) < 2:
        raise Nip44Error("invalid padding")
    (length,) = struct.unpack(">H", padded[:2])
    raw = padded[2 : 2 + length]
    if length == 0 or len(raw) != length or len(padded) != 2 + calc_padded_len(length):
        raise Nip44Error("invalid padding")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Nip44Error("plaintext is not UTF-8") from None


def _chacha20(key: bytes, nonce: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.ChaCha20(key, b"\x00\x00\x00\x00" + nonce), mode=None)
    return cipher.encryptor().update(data)


def _mac(hmac_key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    return hmac.new(hmac_key, nonce + ciphertext, hashlib.sha256).digest()


def encrypt(plaintext: str, conversation_key: bytes, nonce: bytes | None = None) -> str:
    """The base64 NIP-44 v2 payload of ``plaintext``. ``nonce`` is for tests only."""
    if nonce is None:
        nonce = os.urandom(32)
    keys = get_message_keys(conversation_key, nonce)
    ciphertext = _chacha20(keys.chacha_key, keys.chacha_nonce, pad(plaintext))
    mac = _mac(keys.hmac_key, nonce, ciphertext)
    return base64.b64encode(bytes([VERSION]) + nonce + ciphertext + mac).decode("ascii")


def decrypt(payload: str, conversation_key: bytes) -> str:
    """The plaintext of a NIP-44 v2 ``payload``. Raises :class:`Nip44Error`."""
    if not isinstance(payload, str):
        raise Nip44Error("payload must be a string")
    if payload[:1] == "#":
        raise Nip44Error("unknown encryption version")
    if not 132 <= len(payload) <= 87472:
        raise Nip44Error(f"invalid payload length: {len(payload)}")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise Nip44Error("invalid base64") from None
    if not 99 <= len(data) <= 65603:
        raise Nip44Error(f"invalid data length: {len(data)}")
    if data[0] != VERSION:
        raise Nip44Error(f"unknown encryption version {data[0]}")
    nonce, ciphertext, mac = data[1:33], data[33:-32], data[-32:]
    keys = get_message_keys(conversation_key, nonce)
    if not hmac.compare_digest(mac, _mac(keys.hmac_key, nonce, ciphertext)):
        raise Nip44Error("invalid MAC")
    return unpad(_chacha20(keys.chacha_key, keys.chacha_nonce, ciphertext))
