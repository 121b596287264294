"""A finished upload becomes a stored file: its record (:func:`record_of`: the torrent's info
dict and info-hash, the MIME type, the chunks) and its bytes at their content addresses
(:func:`place_upload`); a deleted file's bytes go (:func:`remove_bytes`).

These are the steps of the write orders the store's durability rests on
(:mod:`tgateway.storage.store`): the temp files (fsynced by the ingest) are renamed to their
addresses and the folders fsynced before the row is committed; a deletion's bytes go only once
its row is gone. The crash points (:mod:`tgateway.storage.crashpoints`) sit between those steps.
The file operations block: the store runs them on its I/O threads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tgateway.config import StorageConfig
from tgateway.metainfo import build_info

from .crashpoints import CrashPoints
from .disk import DiskLayout, fsync_dirs, place
from .ingest import IngestResult, convert_layout
from .model import Chunk, StoredFile, UploadContext
from .naming import choose_mime

__all__ = ["place_upload", "record_of", "remove_bytes", "unplace"]


def record_of(
    result: IngestResult,
    ctx: UploadContext,
    declared_type: str | None,
    now: float,
    config: StorageConfig,
) -> StoredFile:
    """The record of a new file: chunked from ``storage.blob_threshold`` bytes on, one chunk per
    piece; named ``ctx.name`` (cleaned by the store's ``commit``) or its SHA-256."""
    name = ctx.name or result.sha256
    pl = config.chunk_size
    chunked = result.size >= config.blob_threshold
    chunks: tuple[Chunk, ...] = ()
    if chunked:
        chunks = tuple(
            Chunk(index=i, sha256=h, offset=i * pl, size=size)
            for i, (h, size) in enumerate(result.chunks)
        )
    info = build_info(name, result.size, pl, result.pieces)
    return StoredFile(
        sha256=result.sha256,
        size=result.size,
        name=name,
        mime=choose_mime(declared_type, name, result.head),
        storage="chunked" if chunked else "blob",
        piece_length=pl,
        info_hash=hashlib.sha1(info).hexdigest(),
        info=info,
        created_at=now,
        chunks=chunks,
    )


def place_upload(layout: DiskLayout, crash: CrashPoints, result: IngestResult,
                 f: StoredFile) -> list[Path]:
    """(thread) Move the fsynced temp files to their addresses and fsync their folders; return
    the paths newly placed (content already there is left as it is). On failure, what this call
    placed is removed again."""
    result = convert_layout(result, f.storage == "chunked")
    placed: list[Path] = []
    try:
        if f.storage == "chunked":
            half = len(f.chunks) // 2
            for c in f.chunks:
                if c.index == half:
                    crash.reach("place:some")
                final = layout.chunk_path(c.sha256)
                if place(result.chunk_file(c.index), final):
                    placed.append(final)
        else:
            final = layout.blob_path(f.sha256)
            if place(result.blob_file, final):
                placed.append(final)
        fsync_dirs(folder for final in placed for folder in layout.folders_of(final))
        crash.reach("place:all")
    except BaseException:
        unplace(placed)
        raise
    return placed


def unplace(paths: list[Path]) -> None:
    """(thread) Remove what :func:`place_upload` placed (its row was not committed)."""
    for p in paths:
        p.unlink(missing_ok=True)


def remove_bytes(crash: CrashPoints, paths: list[Path]) -> None:
    """(thread) The bytes of a file whose row is gone."""
    crash.reach("delete:row")
    half = len(paths) // 2
    for i, p in enumerate(paths):
        if i == half and i:
            crash.reach("delete:some")
        p.unlink(missing_ok=True)
