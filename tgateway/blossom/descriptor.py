"""Blob descriptors (BUD-02) with the gateway's extras: ``infohash``, ``magnet``, ``torrent``, the
BUD-08 ``nip94`` tags (``magnet`` and ``i``, the info-hash, among them: the blob's torrent) and
the BUD-10 ``blossom_uri``. Pure functions of a stored file and the public URLs (the onion service's among them, once up)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tgateway.links import Links, extension
from tgateway.storage.model import StoredFile


def blob_url(base_url: str, f: StoredFile) -> str:
    return f"{base_url.rstrip('/')}/{f.sha256}{extension(f)}"


def nip94_tags(f: StoredFile, url: str, magnet: str, original: str | None = None,
               fallbacks: Iterable[str] = ()) -> list[list[str]]:
    """The NIP-94 file metadata tags of BUD-08 (url, m, x, ox, size, magnet, i, then a
    ``fallback`` per other URL of the blob). ``ox`` is the SHA-256 of the file before the server
    transformed it (BUD-05 ``/media``), else its own."""
    return [
        ["url", url],
        ["m", f.mime],
        ["x", f.sha256],
        ["ox", original or f.sha256],
        ["size", str(f.size)],
        ["magnet", magnet],
        ["i", f.info_hash],
        *(["fallback", u] for u in fallbacks),
    ]


def descriptor(f: StoredFile, *, base_url: str, links: Links, uploaded: float,
               authors: Iterable[str] = (), original: str | None = None) -> dict[str, Any]:
    """The blob descriptor returned by /upload, /media, /mirror and /list; ``authors``: the
    uploader(s), for the BUD-10 URI's ``as`` hints; ``original``: the SHA-256 a /media upload
    had before it was optimised (NIP-94 ``ox``). While the onion service is up, the blob's URL
    there is an alternative: ``onion_url``, and a NIP-94 ``fallback`` tag."""
    url = blob_url(base_url, f)
    magnet = links.magnet(f)
    onion = links.onion_blossom_url()
    onion_url = blob_url(onion, f) if onion else None
    out: dict[str, Any] = {
        "url": url,
        "sha256": f.sha256,
        "size": f.size,
        "type": f.mime or "application/octet-stream",
        "uploaded": int(uploaded),
        "infohash": f.info_hash,
        "magnet": magnet,
        "torrent": links.torrent(f),
        "nip94": nip94_tags(f, url, magnet, original, [onion_url] if onion_url else ()),
        "blossom_uri": links.blossom_uri(f, authors),
    }
    if onion_url:
        out["onion_url"] = onion_url
    return out


__all__ = ["blob_url", "descriptor", "extension", "nip94_tags"]
