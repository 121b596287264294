"""Torrent metainfo (BEP 3, 9, 12, 19): the info dict, ``.torrent`` bytes and magnet links.

The one home of what a torrent of a stored file looks like: the content store builds the info
dict once when it stores a file (and keeps its bytes verbatim, so the info-hash never changes);
:class:`~tgateway.links.Links` wraps it in a ``.torrent`` and a magnet link with the gateway's
trackers and webseed; NIP-35 events carry the same magnet link. Pure functions, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from urllib.parse import quote

from tgateway import bencode

__all__ = ["CREATED_BY", "build_info", "encode_with_raw", "magnet_uri", "torrent_bytes"]

CREATED_BY = "tgateway/0.1"


def build_info(name: str, size: int, piece_length: int, pieces: bytes) -> bytes:
    """The bencoded BitTorrent v1 info dict of a single-file torrent."""
    return bencode.encode(
        {
            b"length": size,
            b"name": name.encode("utf-8"),
            b"piece length": piece_length,
            b"pieces": pieces,
        }
    )


def torrent_bytes(
    info: bytes,
    *,
    created_at: float,
    trackers: Sequence[str] = (),
    webseed_bases: Sequence[str] = (),
) -> bytes:
    """A ``.torrent`` file around an already-bencoded info dict (spliced in verbatim): the first
    tracker as ``announce``, all of them in ``announce-list`` (one tier each), and ``url-list``
    (BEP 19) when ``webseed_bases`` are given. ``created_at`` 0 means now."""
    outer: dict[bytes, object] = {
        b"created by": CREATED_BY.encode(),
        b"creation date": int(created_at or time.time()),
        b"info": _Raw(info),
    }
    if trackers:
        outer[b"announce"] = trackers[0].encode()
        outer[b"announce-list"] = [[t.encode()] for t in trackers]
    if webseed_bases:
        outer[b"url-list"] = [w.encode() for w in webseed_bases]
    return encode_with_raw(outer)


def magnet_uri(
    info_hash_v1: str,
    name: str,
    trackers: Sequence[str] = (),
    webseeds: Sequence[str] = (),
    size: int | None = None,
) -> str:
    """``magnet:?xt=urn:btih:<hash>&dn=<name>&tr=...&ws=...`` (``xl`` when ``size`` is known)."""
    parts = [f"xt=urn:btih:{info_hash_v1}", f"dn={quote(name, safe='')}"]
    if size is not None:
        parts.append(f"xl={size}")
    parts += [f"tr={quote(t, safe='')}" for t in trackers]
    parts += [f"ws={quote(w, safe='')}" for w in webseeds]
    return "magnet:?" + "&".join(parts)


class _Raw:
    """Already-bencoded bytes to splice into an encoded dict."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def encode_with_raw(d: dict[bytes, object]) -> bytes:
    """Bencode a dict whose values may be :class:`_Raw` (written as they are)."""
    parts = [b"d"]
    for key in sorted(d):
        value = d[key]
        parts.append(bencode.encode(key))
        parts.append(value.data if isinstance(value, _Raw) else bencode.encode(value))
    parts.append(b"e")
    return b"".join(parts)
