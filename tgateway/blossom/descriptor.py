"""Blob descriptors (BUD-02) with the gateway's extras: ``infohash``, ``magnet``, ``torrent``, the
BUD-08 ``nip94`` tags (``magnet`` and ``i``, the info-hash, among them: the blob's torrent) and
the BUD-10 ``blossom_uri``. Pure functions of a stored file and the public URLs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tgateway.links import Links, extension
from tgateway.storage.model import StoredFile


def blob_url(base_url: str, f: StoredFile) -> str:
    return f"{base_url.rstrip('/')}/{f.sha256}{extension(f)}"


def nip94_tags(f: StoredFile, url: str, magnet: str, original: str | None = None
               ) -> list[list[str]]:
    """The NIP-94 file metadata tags of BUD-08 (url, m, x, ox, size, magnet, i). ``ox`` is the
    SHA-256 of the file before the server transformed it (BUD-05 ``/media``), else its own."""
    return [
        ["url", url],
        ["m", f.mime],
        ["x", f.sha256],
        ["ox", original or f.sha256],
        ["size", str(f.size)],
        ["magnet", magnet],
        ["i", f.info_hash],
    ]


def descriptor(f: StoredFile, *, base_url: str, links: Links, uploaded: float,
               authors: Iterable[str] = (), original: str | None = None) -> dict[str, Any]:
    """The blob descriptor returned by /upload, /media, /mirror and /list; ``authors``: the
    uploader(s), for the BUD-10 URI's ``as`` hints; ``original``: the SHA-256 a /media upload
    had before it was optimised (NIP-94 ``ox``)."""
    url = blob_url(base_url, f)
    magnet = links.magnet(f)
    return {
        "url": url,
        "sha256": f.sha256,
        "size": f.size,
        "type": f.mime or "application/octet-stream",
        "uploaded": int(uploaded),
        "infohash": f.info_hash,
        "magnet": magnet,
        "torrent": links.torrent(f),
        "nip94": nip94_tags(f, url, magnet, original),
        "blossom_uri": links.blossom_uri(f, authors),
    }


__all__ = ["blob_url", "descriptor", "extension", "nip94_tags"]
