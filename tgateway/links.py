"""Public URLs of a stored file: download, torrent, webseed, Blossom, magnet; and .torrent bytes.

Pure functions of the configured public base URLs and tracker URLs. The web API, Nostr
announcements and Blossom descriptors all build links here.
"""

from __future__ import annotations

import mimetypes
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from tgateway import bencode
from tgateway.storage.model import StoredFile

CREATED_BY = "tgateway/0.1"
_EXTENSION = re.compile(r"^[A-Za-z0-9]{1,10}$")


def blob_extension(name: str, mime: str) -> str:
    """The extension of a blob's ``blossom:`` URI (BUD-10 requires one): the file name's when it
    has a short alphanumeric one, else the usual one for its type, else ``bin``."""
    _, dot, ext = name.rpartition(".")
    if dot and _EXTENSION.match(ext):
        return ext.lower()
    guessed = mimetypes.guess_extension(mime.split(";", 1)[0].strip().lower() or "x/x")
    return guessed[1:] if guessed else "bin"


@dataclass(frozen=True)
class Links:
    base_url: str  # e.g. http://127.0.0.1:9877 (no trailing slash)
    tracker_urls: tuple[str, ...] = ()  # HTTP, UDP, WebSocket announce URLs, in that order
    blossom_url: str | None = None

    def download(self, f: StoredFile) -> str:
        return f"{self.base_url}/api/download/{f.sha256}"

    def torrent(self, f: StoredFile) -> str:
        return f"{self.base_url}/api/torrent/{f.sha256}"

    def metadata(self, f: StoredFile) -> str:
        return f"{self.base_url}/api/files/{f.sha256}"

    def webseed_base(self, f: StoredFile) -> str:
        """The BEP 19 ``url-list`` entry: ends with '/', clients append the file name."""
        return f"{self.base_url}/api/webseed/{f.info_hash}/"

    def webseed(self, f: StoredFile) -> str:
        return self.webseed_base(f) + quote(f.name, safe="")

    def stream(self, f: StoredFile) -> str:
        return f"{self.base_url}/api/stream/{f.sha256}"

    def blossom(self, f: StoredFile) -> str | None:
        if not self.blossom_url:
            return None
        return f"{self.blossom_url}/{f.sha256}"

    def blossom_uri(self, f: StoredFile) -> str | None:
        """BUD-10: ``blossom:<sha256>.<ext>?xs=<server>&sz=<size>``; the server hint is the full
        base URL (the scheme and port matter on a server that is not https on 443)."""
        if not self.blossom_url:
            return None
        query = urlencode({"xs": self.blossom_url, "sz": f.size})
        return f"blossom:{f.sha256}.{blob_extension(f.name, f.mime)}?{query}"

    def magnet(self, f: StoredFile) -> str:
        parts = [
            f"xt=urn:btih:{f.info_hash}",
            f"dn={quote(f.name, safe='')}",
            f"xl={f.size}",
        ]
        parts += [f"tr={quote(t, safe='')}" for t in self.tracker_urls]
        parts.append(f"ws={quote(self.webseed(f), safe='')}")
        return "magnet:?" + "&".join(parts)

    def torrent_bytes(self, f: StoredFile, *, webseed: bool = True) -> bytes:
        """The .torrent file; the stored info dict bytes are spliced in verbatim."""
        outer: dict[bytes, object] = {
            b"created by": CREATED_BY.encode(),
            b"creation date": int(f.created_at or time.time()),
            b"info": _Raw(f.info),
        }
        if self.tracker_urls:
            outer[b"announce"] = self.tracker_urls[0].encode()
            outer[b"announce-list"] = [[t.encode()] for t in self.tracker_urls]
        if webseed:
            outer[b"url-list"] = [self.webseed_base(f).encode()]
        return encode_with_raw(outer)

    def describe(self, f: StoredFile) -> dict[str, object]:
        """The JSON description used by upload responses and GET /api/files/<sha256>."""
        out: dict[str, object] = {
            "sha256": f.sha256,
            "size": f.size,
            "name": f.name,
            "mime_type": f.mime,
            "storage": f.storage,
            "piece_length": f.piece_length,
            "pieces": f.piece_count,
            "chunks": len(f.chunks),
            "info_hash": f.info_hash,
            "created_at": int(f.created_at),
            "magnet": self.magnet(f),
            "urls": {
                "download": self.download(f),
                "torrent": self.torrent(f),
                "webseed": self.webseed(f),
                "metadata": self.metadata(f),
                "stream": self.stream(f),
            },
            "trackers": list(self.tracker_urls),
        }
        blossom = self.blossom(f)
        if blossom:
            out["urls"]["blossom"] = blossom  # type: ignore[index]
            out["urls"]["blossom_uri"] = self.blossom_uri(f)  # type: ignore[index]
        if f.meta:
            out["meta"] = f.meta
        return out


class _Raw:
    """Already-bencoded bytes to splice into an encoded dict."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def encode_with_raw(d: dict[bytes, object]) -> bytes:
    parts = [b"d"]
    for key in sorted(d):
        value = d[key]
        parts.append(bencode.encode(key))
        parts.append(value.data if isinstance(value, _Raw) else bencode.encode(value))
    parts.append(b"e")
    return b"".join(parts)
