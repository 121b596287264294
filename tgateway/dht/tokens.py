"""Tokens of ``get_peers`` replies (BEP 5): bound to the requester's IP, checked on ``announce_peer``.

A token is the first 8 bytes of SHA-1(secret + requester IP); the secret rotates every 5 minutes
and the previous one stays valid, so a token lives 5 to 10 minutes. Secrets come from an injected
``random.Random`` (the service passes ``random.SystemRandom()``: they must not be predictable from
what the node's other randomness reveals).
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["TOKEN_ROTATE", "TokenManager"]

TOKEN_ROTATE = 5 * 60.0


class TokenManager:
    """Tokens bound to the requester's IP: SHA-1(secret + ip)[:8], secrets rotated every 5 min."""

    def __init__(self, rng: random.Random, now: float, rotate_every: float = TOKEN_ROTATE):
        self._rng = rng
        self.rotate_every = rotate_every
        self._secret = rng.randbytes(16)
        self._previous = self._secret
        self._rotate_at = now + rotate_every
        self._cache: dict[str, bytes] = {}

    def rotate(self, now: float) -> None:
        """Rotate the secret if its 5 minutes are up (also done lazily on use)."""
        if now >= self._rotate_at:
            # More than two periods of silence: the previous secret is stale too.
            stale = now >= self._rotate_at + self.rotate_every
            self._previous = self._rng.randbytes(16) if stale else self._secret
            self._secret = self._rng.randbytes(16)
            self._rotate_at = now + self.rotate_every
            self._cache.clear()

    @staticmethod
    def _make(secret: bytes, ip: str) -> bytes:
        return hashlib.sha1(secret + ip.encode()).digest()[:8]

    def token(self, ip: str, now: float) -> bytes:
        if now >= self._rotate_at:
            self.rotate(now)
        tok = self._cache.get(ip)
        if tok is None:
            if len(self._cache) > 50_000:
                self._cache.clear()
            tok = self._cache[ip] = self._make(self._secret, ip)
        return tok

    def valid(self, token: bytes, ip: str, now: float) -> bool:
        if token == self.token(ip, now):
            return True
        return token == self._make(self._previous, ip)
