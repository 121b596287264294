"""What the content store keeps in memory: every stored info-hash (loaded at start: the tracker's
gateway-only mode and the peer ask synchronously), the info-hashes it announces (all but those of
files only derived from others: :meth:`~tgateway.storage.api.ContentStore.announced_info_hashes`),
and the most recent file records. A stored file never changes: its record is dropped when the
file goes or its metadata changes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from .model import StoredFile

__all__ = ["RECORD_CACHE", "StoreIndex"]

RECORD_CACHE = 4096  # StoredFile records kept in memory


class StoreIndex:
    def __init__(self, records: int = RECORD_CACHE) -> None:
        self.info_hashes: set[bytes] = set()
        self.announced: set[bytes] = set()  # of files some owner did not derive
        self._size = records
        self._records: OrderedDict[str, StoredFile] = OrderedDict()
        self._by_info_hash: dict[str, str] = {}

    def load(self, info_hashes: Iterable[str], announced: Iterable[str]) -> None:
        """Every stored info-hash and the announced ones (hex), as the database has them."""
        self.info_hashes = {bytes.fromhex(h) for h in info_hashes}
        self.announced = {bytes.fromhex(h) for h in announced}

    def record(self, sha256: str) -> StoredFile | None:
        """The cached record of ``sha256`` (None: not cached)."""
        cached = self._records.get(sha256)
        if cached is not None:
            self._records.move_to_end(sha256)
        return cached

    def cached_sha256(self, info_hash_hex: str) -> str | None:
        """The SHA-256 of the file with this info-hash, when its record is cached."""
        sha = self._by_info_hash.get(info_hash_hex)
        return sha if sha is not None and sha in self._records else None

    def remember(self, f: StoredFile | None) -> StoredFile | None:
        """Cache ``f`` (the least recently used record goes past the limit); returns it."""
        if f is not None:
            self._records[f.sha256] = f
            self._records.move_to_end(f.sha256)
            self._by_info_hash[f.info_hash] = f.sha256
            while len(self._records) > self._size:
                _, old = self._records.popitem(last=False)
                self._by_info_hash.pop(old.info_hash, None)
        return f

    def changed(self, sha256: str) -> None:
        """``sha256``'s metadata changed: its record is read again when asked for."""
        cached = self._records.pop(sha256, None)
        if cached is not None:
            self._by_info_hash.pop(cached.info_hash, None)

    def removed(self, f: StoredFile) -> None:
        """``f`` is no longer stored: its record and its info-hash go."""
        self._records.pop(f.sha256, None)
        self._by_info_hash.pop(f.info_hash, None)
        self.info_hashes.discard(f.info_hash_bytes)
        self.announced.discard(f.info_hash_bytes)
