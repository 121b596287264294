"""The block list seam: what every component may ask of the one block list.

The block list exists once (:class:`tgateway.storage.policy.StoredBlockList`: SQL, with sets in
memory, built with the storage); components see it only through these protocols, as
``Deps.blocks``:

- files an admin deleted are *tombstoned* by SHA-256 and v1 info-hash: the upload handler never
  accepts the bytes again (``is_blocked_sha256``, a check of every upload: API, Blossom, mirror,
  ``/media``, swarm fetch); the tracker, the DHT node and the peer refuse the info-hash
  (``is_blocked_info_hash``, read on their hot paths: a set lookup, no I/O);
- banned pubkeys (``is_banned``) cannot sign in, authenticate a request (session, NIP-98, Blossom
  token) or have the gateway publish for them.

A tombstone is permanent; a ban is lifted by an admin (``is_banned`` is False again at once).
What a component holds of a tombstoned file (the peer's connections, the DHT's announces, the
gateway's Nostr events) goes with the file's deletion: the content store's "deleted" event.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Bans", "BlockList"]


class Bans(Protocol):
    def is_banned(self, pubkey: str) -> bool:
        """True while ``pubkey`` (hex) is banned."""


class BlockList(Bans, Protocol):
    def is_blocked_sha256(self, sha256: str) -> bool:
        """True when the file with this SHA-256 (lowercase hex) is tombstoned."""

    def is_blocked_info_hash(self, info_hash: bytes) -> bool:
        """True when this v1 info-hash (20 bytes) is tombstoned."""
