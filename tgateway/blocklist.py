"""The block list seam: what every component may ask of the one block list.

The block list exists once (:class:`tgateway.admin.blocklist.StoredBlockList`: SQL, with sets in
memory); components see it only through these protocols, handed to them by ``tap``:

- files an admin deleted are *tombstoned* by SHA-256 and v1 info-hash: the upload handler never
  accepts the bytes again (``is_blocked_sha256``, a check of every upload: API, Blossom, mirror,
  ``/media``, swarm fetch); the tracker, the DHT node and the peer refuse the info-hash
  (``is_blocked_info_hash``, read on their hot paths: a set lookup, no I/O);
- banned pubkeys (``is_banned``) cannot sign in, authenticate a request (session, NIP-98, Blossom
  token) or have the gateway publish for them;
- ``subscribe_blocked``: called (on a later reactor turn) with a :class:`Blocked` for each new
  tombstone, for what a component holds already (open peer connections).

A tombstone is permanent; a ban is lifted by an admin (``is_banned`` is False again at once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Bans", "BlockList", "Blocked", "InfoHashFilter"]


@dataclass(frozen=True)
class Blocked:
    """A new tombstone: the file's SHA-256 (hex) and its v1 info-hash (None when it was not
    stored here, so no torrent of it exists)."""

    sha256: str
    info_hash: bytes | None


#: answers "is this 20-byte info-hash refused?" (the tracker's, DHT's and peer's view)
InfoHashFilter = Callable[[bytes], bool]


class Bans(Protocol):
    def is_banned(self, pubkey: str) -> bool:
        """True while ``pubkey`` (hex) is banned."""


class BlockList(Bans, Protocol):
    def is_blocked_sha256(self, sha256: str) -> bool:
        """True when the file with this SHA-256 (lowercase hex) is tombstoned."""

    def is_blocked_info_hash(self, info_hash: bytes) -> bool:
        """True when this v1 info-hash (20 bytes) is tombstoned."""

    def subscribe_blocked(self, callback: Callable[[Blocked], Any]) -> None:
        """Call ``callback`` for every new tombstone (on a later reactor turn)."""
