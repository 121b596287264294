"""Public URLs of a stored file: download, torrent, webseed, Blossom, magnet; and .torrent bytes.

Functions of the configured public base URLs and tracker URLs, and of the onion service's
address once tor has answered. The web API, Nostr announcements and Blossom descriptors all build
links here; the torrent formats themselves (``.torrent`` bytes, magnet links) come from
:mod:`tgateway.metainfo`.

The onion address is known only after the gateway has started (tor answers ``ADD_ONION`` some
time after the listeners are up), so :class:`Links` does not hold it but reads it from an
:class:`OnionOrigin` that ``tap`` makes with the links and the tor component fills
(:meth:`OnionOrigin.publish`) and empties (:meth:`OnionOrigin.withdraw`). Every URL is built when
a response or an event is made, so whatever is made while the onion is up carries it: the
``.torrent`` of any file (``url-list`` lies outside the info dict, the info-hash does not change),
descriptors, API descriptions, and the Nostr events signed from then on. Events signed before
(a file stored while tor was starting, or before tor was enabled) keep the URLs they had.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
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
class Origins:
    """Base URLs (no trailing slash) of another way in: the gateway API, and the Blossom server
    when it runs."""

    gateway: str | None
    blossom: str | None
    onion: str  # the address, ``<56 base32>.onion``


class OnionOrigin:
    """Where the onion service is, once tor has published it: None before (tor starting, tor
    off, tor failed) and after it is withdrawn. Written by the tor component, read by
    :class:`Links` whenever it builds a URL."""

    def __init__(self) -> None:
        self._origins: Origins | None = None

    def current(self) -> Origins | None:
        return self._origins

    def publish(self, origins: Origins) -> None:
        self._origins = origins

    def withdraw(self) -> None:
        self._origins = None


@dataclass(frozen=True)
class Links:
    base_url: str  # e.g. http://127.0.0.1:9877 (no trailing slash)
    tracker_urls: tuple[str, ...] = ()  # announce URLs in the order clients try them (tracker_urls)
    blossom_url: str | None = None
    # the onion service's base URLs, once tor has answered (tgateway.tor)
    onion_origin: OnionOrigin = field(default_factory=OnionOrigin, compare=False)

    def onion(self) -> Links | None:
        """The same links on the onion service (trackers left out: they are not published
        there), or None while it is not up or does not serve the gateway API."""
        origins = self.onion_origin.current()
        if origins is None or origins.gateway is None:
            return None
        return Links(base_url=origins.gateway, blossom_url=origins.blossom)

    def onion_blossom_url(self) -> str | None:
        """The Blossom server's base URL on the onion service, when both are up."""
        origins = self.onion_origin.current()
        return origins.blossom if origins is not None else None

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

    def webseed_bases(self, f: StoredFile) -> list[str]:
        """Every ``url-list`` entry: the public one, then the onion service's when it is up."""
        onion = self.onion()
        return [self.webseed_base(f), *([onion.webseed_base(f)] if onion else [])]

    def webseeds(self, f: StoredFile) -> list[str]:
        """Every webseed URL of the file (magnet ``ws=``, NIP-35 ``webseed`` tags)."""
        onion = self.onion()
        return [self.webseed(f), *([onion.webseed(f)] if onion else [])]

    def stream(self, f: StoredFile) -> str:
        """The best rendition once transcoded, the original until then."""
        return f"{self.base_url}/api/stream/{f.sha256}"

    def transcoded(self, f: StoredFile) -> str:
        """The best rendition only (202 with Retry-After while its transcode is under way)."""
        return f"{self.base_url}/api/stream/{f.sha256}?transcoded=true"

    def hls(self, f: StoredFile) -> str:
        """The HLS master playlist of a video (202 with Retry-After while it is transcoded)."""
        return f"{self.base_url}/api/stream/{f.sha256}/playlist.m3u8"

    def blossom(self, f: StoredFile) -> str | None:
        if not self.blossom_url:
            return None
        return f"{self.blossom_url}/{f.sha256}"

    def magnet(self, f: StoredFile) -> str:
        return magnet_uri(f.info_hash, f.name, self.tracker_urls, self.webseeds(f), f.size)

    def torrent_bytes(self, f: StoredFile, *, webseed: bool = True) -> bytes:
        """The .torrent file; the stored info dict bytes are spliced in verbatim. ``url-list``:
        the public webseed, and the onion service's when it is up."""
        return torrent_bytes(f.info, created_at=f.created_at, trackers=self.tracker_urls,
                             webseed_bases=self.webseed_bases(f) if webseed else ())

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
        onion = self.onion()
        if onion is not None:
            out["onion_urls"] = {
                "download": onion.download(f),
                "torrent": onion.torrent(f),
                "webseed": onion.webseed(f),
                "metadata": onion.metadata(f),
                "stream": onion.stream(f),
                **({"blossom": b} if (b := onion.blossom(f)) else {}),
            }
        if f.meta:
            out["meta"] = f.meta
        return out

