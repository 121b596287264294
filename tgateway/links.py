"""Public URLs of a stored file: download, torrent, webseed, Blossom, magnet; and .torrent bytes.

Pure functions of the configured public base URLs and tracker URLs. The web API, Nostr
announcements and Blossom descriptors all build links here; the torrent formats themselves
(``.torrent`` bytes, magnet links) come from :mod:`tgateway.metainfo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from tgateway.metainfo import magnet_uri, torrent_bytes
from tgateway.storage.model import StoredFile


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

    def magnet(self, f: StoredFile) -> str:
        return magnet_uri(f.info_hash, f.name, self.tracker_urls, [self.webseed(f)], f.size)

    def torrent_bytes(self, f: StoredFile, *, webseed: bool = True) -> bytes:
        """The .torrent file; the stored info dict bytes are spliced in verbatim."""
        return torrent_bytes(f.info, created_at=f.created_at, trackers=self.tracker_urls,
                             webseed_base=self.webseed_base(f) if webseed else None)

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
        if f.meta:
            out["meta"] = f.meta
        return out

