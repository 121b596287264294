"""Blob descriptors (BUD-02) with the gateway's extras: ``infohash``, ``magnet`` and the
BUD-08 ``nip94`` tags. Pure functions of a stored file and the public URLs."""

from __future__ import annotations

import mimetypes
import re
from typing import Any

from tgateway.links import Links
from tgateway.storage.model import StoredFile

_EXT = re.compile(r"\.([A-Za-z0-9]{1,10})\Z")
# mimetypes picks odd first extensions for a few common types
_PREFERRED = {
    "image/jpeg": ".jpg",
    "audio/mpeg": ".mp3",
    "video/quicktime": ".mov",
    "text/plain": ".txt",
    "application/octet-stream": ".bin",
    "video/mp4": ".mp4",
    "audio/mp4": ".m4a",
}


def extension(f: StoredFile) -> str:
    """The file extension of the blob URL: from the MIME type, else the name, else ``.bin``."""
    ext = _PREFERRED.get(f.mime) or mimetypes.guess_extension(f.mime, strict=False)
    if ext:
        return ext
    m = _EXT.search(f.name)
    return "." + m.group(1).lower() if m else ".bin"


def blob_url(base_url: str, f: StoredFile) -> str:
    return f"{base_url.rstrip('/')}/{f.sha256}{extension(f)}"


def nip94_tags(f: StoredFile, url: str, magnet: str) -> list[list[str]]:
    """The NIP-94 file metadata tags of BUD-08 (url, m, x, ox, size, magnet, i)."""
    return [
        ["url", url],
        ["m", f.mime],
        ["x", f.sha256],
        ["ox", f.sha256],
        ["size", str(f.size)],
        ["magnet", magnet],
        ["i", f.info_hash],
    ]


def descriptor(f: StoredFile, *, base_url: str, links: Links, uploaded: float) -> dict[str, Any]:
    """The blob descriptor returned by /upload, /mirror and /list."""
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
        "nip94": nip94_tags(f, url, magnet),
    }


__all__ = ["blob_url", "descriptor", "extension", "nip94_tags"]
