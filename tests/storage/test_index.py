"""What the content store keeps in memory (:mod:`tgateway.storage.index`)."""

from __future__ import annotations

from tgateway.storage.index import StoreIndex
from tgateway.storage.model import StoredFile


def _file(n: int) -> StoredFile:
    return StoredFile(sha256=f"{n:064x}", size=1, name="f", mime="application/octet-stream",
                      storage="blob", piece_length=16384, info_hash=f"{n:040x}", info=b"",
                      created_at=0.0)


def test_the_least_recently_used_record_goes_with_its_info_hash() -> None:
    index = StoreIndex(records=2)
    a, b, c = _file(1), _file(2), _file(3)
    index.remember(a)
    index.remember(b)
    assert index.record(a.sha256) == a  # a is now the most recent
    index.remember(c)
    assert index.record(b.sha256) is None
    assert index.cached_sha256(b.info_hash) is None
    assert index.cached_sha256(a.info_hash) == a.sha256
    assert index.cached_sha256(c.info_hash) == c.sha256


def test_a_changed_file_is_read_again_and_a_removed_one_is_forgotten() -> None:
    index = StoreIndex()
    a, b = _file(1), _file(2)
    index.load([a.info_hash, b.info_hash], [a.info_hash])
    assert index.info_hashes == {a.info_hash_bytes, b.info_hash_bytes}
    assert index.announced == {a.info_hash_bytes}
    index.remember(a)
    index.remember(b)
    index.changed(b.sha256)
    assert index.record(b.sha256) is None and index.cached_sha256(b.info_hash) is None
    assert index.info_hashes == {a.info_hash_bytes, b.info_hash_bytes}  # still stored
    index.removed(a)
    assert index.record(a.sha256) is None and index.cached_sha256(a.info_hash) is None
    assert index.info_hashes == {b.info_hash_bytes} and index.announced == set()
