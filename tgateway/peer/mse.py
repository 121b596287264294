"""Message Stream Encryption (MSE/PE, the "Vuze" protocol encryption), responder side only.

Many clients (libtorrent-based ones by default: qBittorrent, Deluge) open outgoing connections
with an encrypted handshake first. The gateway answers it so they need no plaintext retry:

    A->B: Ya, PadA
    B->A: Yb, PadB
    A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
          ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
    B->A: ENCRYPT(VC, crypto_select, len(padD), padD), ENCRYPT2(payload stream)

DH over the 768-bit MODP prime with generator 2; S the shared secret; SKEY the info-hash; RC4
keyed with HASH('keyA', S, SKEY) (A to B) and HASH('keyB', S, SKEY) (B to A), the first 1024 bytes
of each key stream discarded; VC eight zero bytes. ``crypto_select`` is plaintext (0x01) when the
initiator offers it (only the handshake is then encrypted, the piece stream costs nothing extra),
else RC4 (0x02).

:class:`MseResponder` is pure: ``feed(data)`` returns bytes to send; once ``done`` it holds the
stream ciphers (or None for plaintext) and the decrypted bytes received after the handshake.
Raises :class:`MseError` for anything that is not a valid MSE handshake for a known torrent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

__all__ = ["MseError", "MseResponder", "req2_hash"]

P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404"
    "DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563",
    16,
)
G = 2
KEY_LEN = 96
VC = b"\x00" * 8
MAX_PAD = 512
CRYPTO_PLAIN = 0x01
CRYPTO_RC4 = 0x02


class MseError(Exception):
    """Not a valid encrypted handshake (or one for a torrent we do not have)."""


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def req2_hash(info_hash: bytes) -> bytes:
    """HASH('req2', SKEY): how an initiator names the torrent without revealing it."""
    return _sha1(b"req2", info_hash)


def rc4(key: bytes) -> Any:
    """An RC4 stream (``update(bytes) -> bytes``) with the first 1024 bytes discarded."""
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
    except ImportError:  # cryptography < 43
        from cryptography.hazmat.primitives.ciphers.algorithms import ARC4
    from cryptography.hazmat.primitives.ciphers import Cipher

    stream = Cipher(ARC4(key), mode=None).encryptor()
    stream.update(b"\x00" * 1024)
    return stream


def _int_bytes(n: int) -> bytes:
    return n.to_bytes(KEY_LEN, "big")


class MseResponder:
    def __init__(
        self,
        find_skey: Callable[[bytes], bytes | None],
        random_bytes: Callable[[int], bytes],
        *,
        allow_plaintext: bool = True,
    ) -> None:
        self.find_skey = find_skey
        self.random_bytes = random_bytes
        self.allow_plaintext = allow_plaintext
        self.buf = bytearray()
        self.state = "ya"
        self.secret = b""
        self.skey = b""
        self.decrypt: Any = None  # A->B RC4 stream
        self.encrypt: Any = None  # B->A RC4 stream
        self.crypto = 0
        self.done = False
        self.payload = b""  # decrypted bytes after the handshake (IA first)
        self._req1 = b""
        self._pad_c = 0
        self._ia_len = 0

    def feed(self, data: bytes) -> bytes:
        """Consume received bytes; return bytes to send (maybe empty)."""
        self.buf += data
        out = b""
        while not self.done:
            step = getattr(self, "_st_" + self.state)()
            if step is None:
                break
            out += step
        return out

    def _st_ya(self) -> bytes | None:
        if len(self.buf) < KEY_LEN:
            return None
        ya = int.from_bytes(self.buf[:KEY_LEN], "big")
        if not 1 < ya < P - 1:
            raise MseError("bad DH key")
        del self.buf[:KEY_LEN]
        xb = int.from_bytes(self.random_bytes(20), "big") | 1
        yb = pow(G, xb, P)
        self.secret = _int_bytes(pow(ya, xb, P))
        self._req1 = _sha1(b"req1", self.secret)
        self.state = "req1"
        pad = self.random_bytes(1)[0] % 64
        return _int_bytes(yb) + self.random_bytes(pad)

    def _st_req1(self) -> bytes | None:
        i = self.buf.find(self._req1)
        if i < 0:
            if len(self.buf) > MAX_PAD + 20:
                raise MseError("no req1 hash within the padding")
            return None
        del self.buf[: i + 20]
        self.state = "skey"
        return b""

    def _st_skey(self) -> bytes | None:
        if len(self.buf) < 20:
            return None
        mask = _sha1(b"req3", self.secret)
        req2 = bytes(a ^ b for a, b in zip(self.buf[:20], mask, strict=True))
        del self.buf[:20]
        skey = self.find_skey(req2)
        if skey is None:
            raise MseError("unknown torrent")
        self.skey = skey
        self.decrypt = rc4(_sha1(b"keyA", self.secret, skey))
        self.encrypt = rc4(_sha1(b"keyB", self.secret, skey))
        self.state = "vc"
        return b""

    def _st_vc(self) -> bytes | None:
        if len(self.buf) < 14:
            return None
        head = self.decrypt.update(bytes(self.buf[:14]))
        del self.buf[:14]
        if head[:8] != VC:
            raise MseError("bad verification constant")
        provide = int.from_bytes(head[8:12], "big")
        self._pad_c = int.from_bytes(head[12:14], "big")
        if self._pad_c > MAX_PAD:
            raise MseError("PadC too long")
        if provide & CRYPTO_PLAIN and self.allow_plaintext:
            self.crypto = CRYPTO_PLAIN
        elif provide & CRYPTO_RC4:
            self.crypto = CRYPTO_RC4
        else:
            raise MseError("no common crypto method")
        self.state = "pad_c"
        return b""

    def _st_pad_c(self) -> bytes | None:
        n = self._pad_c
        if len(self.buf) < n + 2:
            return None
        plain = self.decrypt.update(bytes(self.buf[: n + 2]))
        del self.buf[: n + 2]
        self._ia_len = int.from_bytes(plain[n:], "big")
        self.state = "ia"
        return b""

    def _st_ia(self) -> bytes | None:
        if len(self.buf) < self._ia_len:
            return None
        ia = self.decrypt.update(bytes(self.buf[: self._ia_len]))
        rest = bytes(self.buf[self._ia_len :])
        self.buf.clear()
        if self.crypto == CRYPTO_RC4:
            rest = self.decrypt.update(rest)
        else:
            self.decrypt = None
        self.payload = ia + rest
        reply: bytes = self.encrypt.update(VC + self.crypto.to_bytes(4, "big") + b"\x00\x00")
        if self.crypto != CRYPTO_RC4:
            self.encrypt = None
        self.done = True
        return reply
