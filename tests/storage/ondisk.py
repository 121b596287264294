"""What a content store holds on disk, for tests that compare it with its rows."""

from __future__ import annotations

from tgateway.storage.store import LocalContentStore


def on_disk(store: LocalContentStore) -> set[str]:
    """Every blob and chunk file name on disk (temporary folders excluded)."""
    out = set()
    for root in (store.layout.blob_dir, store.layout.chunk_dir):
        for p in root.rglob("*"):
            if p.is_file() and ".tmp" not in p.relative_to(root).parts:
                out.add(p.name)
    return out
