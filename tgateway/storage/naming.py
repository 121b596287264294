"""File names and content types of uploads: the one rule for names, and MIME sniffing.

:func:`clean_name` is applied by the content store to every upload's name (and to names of rows
stored before the rule, when they are read); :func:`choose_mime` picks a stored file's type from
what the uploader declared, the name, and the first bytes (:func:`sniff_mime`).
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata

__all__ = ["NAME_MAX_BYTES", "choose_mime", "clean_name", "looks_like_video", "sniff_mime"]

NAME_MAX_BYTES = 240
_EDGES = re.compile(r"\A[\s.]+|[\s.]+\Z")


def _name_char(c: str) -> str:
    """One character of a file name as it is kept: controls (C0, DEL, C1, line and paragraph
    separators) become ``_``; invisible format characters (bidirectional
    embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, the marks U+200E,
    U+200F and U+061C, zero-width characters, the byte order mark, soft hyphen) and lone
    surrogates are dropped."""
    category = unicodedata.category(c)
    if category in ("Cc", "Zl", "Zp"):
        return "_"
    if category in ("Cf", "Cs"):
        return ""
    return c


def clean_name(name: str | None, fallback: str) -> str:
    """A file name safe for torrents, magnet links, Content-Disposition and listings.

    The one rule for every name an upload brings (the store applies it in ``commit``, and to
    names read back from rows stored before the rule): only the last path segment; see
    :func:`_name_char` for the characters replaced or dropped; NFC; no leading or trailing dots or
    white space; at most ``NAME_MAX_BYTES`` bytes of UTF-8. ``fallback`` when nothing is left.
    Applying it twice changes nothing.
    """
    if not name:
        return fallback
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not name.isascii() or not name.isprintable():
        name = "".join(_name_char(c) for c in name)
        name = unicodedata.normalize("NFC", name)  # after the drops: they may join characters
    name = _EDGES.sub("", name)
    encoded = name.encode("utf-8")
    if len(encoded) > NAME_MAX_BYTES:
        name = _EDGES.sub("", encoded[:NAME_MAX_BYTES].decode("utf-8", "ignore"))
    return name or fallback


_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftypqt", "video/quicktime"),
    (4, b"ftyp", "video/mp4"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF8", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"d8:announce", "application/x-bittorrent"),
)


def sniff_mime(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    for offset, magic, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if mime == "video/mp4" and head[8:11] == b"M4A":
                return "audio/mp4"
            return mime
    return None


def choose_mime(declared: str | None, name: str, head: bytes) -> str:
    """Declared type if specific, else the name's, else the content's, else octet-stream."""
    if declared:
        declared = declared.split(";", 1)[0].strip().lower()
        if declared and declared not in ("application/octet-stream", "binary/octet-stream") and re.match(
            r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$", declared
        ):
            return declared
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed:
        return guessed
    return sniff_mime(head) or "application/octet-stream"


_VIDEO_MAGIC = (
    (4, b"ftyp"),  # MP4 / QuickTime / 3GP
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"FLV\x01"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"),  # ASF / WMV
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x00\x00\x01\xb3"),  # MPEG-1/2 video
)


def looks_like_video(head: bytes, mime: str = "") -> bool:
    """A cheap first filter: a video MIME type or a video container's magic bytes."""
    if mime.lower().startswith("video/"):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return True  # MPEG-TS
    if head[4:8] == b"ftyp" and head[8:11] == b"M4A":
        return False
    return any(head[o : o + len(m)] == m for o, m in _VIDEO_MAGIC)
