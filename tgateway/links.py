"""Public URLs of a stored file: download, torrent, webseed, Blossom, magnet; and .torrent bytes.

Pure functions of the configured public base URLs and tracker URLs. The web API, Nostr
announcements and Blossom descriptors all build links here; the torrent formats themselves
(``.torrent`` bytes, magnet links) come from :mod:`tgateway.metainfo`.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from tgateway.metainfo import magnet_uri, torrent_bytes
from tgateway.storage.model import StoredFile

_EXT = re.compile(r"\.([A-Za-z0-9]{1,10})\Z")
_PUBKEY = re.compile(r"[0-9a-f]{64}\Z")
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
    """A blob's file extension: from the MIME type, else the name, else ``.bin`` (BUD-02 URLs,
    BUD-10 URIs)."""
    ext = _PREFERRED.get(f.mime) or mimetypes.guess_extension(f.mime, strict=False)
    if ext:
        return ext
    m = _EXT.search(f.name)
    return "." + m.group(1).lower() if m else ".bin"


def server_hint(base_url: str) -> str:
    """A BUD-10 ``xs`` value for a server at ``base_url``: its domain, with the port when it
    is not the scheme's default (a hint without it would send clients to another port)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def blossom_uri(f: StoredFile, *, server: str | None, authors: Iterable[str] = ()) -> str:
    """The BUD-10 ``blossom:<sha256>.<ext>`` URI of a stored file, with ``xs`` (this Blossom
    server, when one runs), ``as`` (each hex pubkey among ``authors``) and ``sz`` (its size)."""
    params = [f"xs={quote(server_hint(server), safe=':[]')}"] if server else []
    params += [f"as={a}" for a in dict.fromkeys(authors) if _PUBKEY.match(a)]
    params.append(f"sz={f.size}")
    return f"blossom:{f.sha256}{extension(f)}?" + "&".join(params)


@dataclass(frozen=True)
class Links:
    base_url: str  # e.g. http://127.0.0.1:9877 (no trailing slash)
    tracker_urls: tuple[str, ...] = ()  # announce URLs in the order clients try them (tracker_urls)
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

    def magnet(self, f: StoredFile) -> str:
        return magnet_uri(f.info_hash, f.name, self.tracker_urls, [self.webseed(f)], f.size)

    def torrent_bytes(self, f: StoredFile, *, webseed: bool = True) -> bytes:
        """The .torrent file; the stored info dict bytes are spliced in verbatim."""
        return torrent_bytes(f.info, created_at=f.created_at, trackers=self.tracker_urls,
                             webseed_base=self.webseed_base(f) if webseed else None)

    def blossom_uri(self, f: StoredFile, authors: Iterable[str] = ()) -> str:
        """BUD-10: ``blossom:<sha256>.<ext>?xs=<this Blossom server>&as=<author>&sz=<size>``."""
        return blossom_uri(f, server=self.blossom_url, authors=authors)

    def describe(self, f: StoredFile, authors: Iterable[str] = ()) -> dict[str, object]:
        """The JSON description used by upload responses and GET /api/files/<sha256>;
        ``authors``: the owners' pubkeys, for the BUD-10 URI's ``as`` hints."""
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
            "blossom_uri": self.blossom_uri(f, authors),
        }
        blossom = self.blossom(f)
        if blossom:
            out["urls"]["blossom"] = blossom  # type: ignore[index]
        if f.meta:
            out["meta"] = f.meta
        return out

