"""The web interface's own files under ``/static/``: its ES modules and CSS, and the vendored
browser libraries.

Two kinds of URL, both cached for a year as ``immutable``:

- ``/static/vendor/<name>``: the libraries of ``static/vendor/`` (see ``MANIFEST.json`` and
  ``scripts/vendor-frontend``); every name carries its package version, so a new version is a
  new URL;
- ``/static/app-<build>/<path>``: the interface's own files (``static/app/``). ``<build>`` is a
  digest of all of them, computed once at start: a changed file changes every URL, so a browser
  never mixes modules of two versions, and relative ``import``s between modules stay under the
  same prefix. Another ``<build>`` is a 404.

Files are read once, on first use, and kept in memory (the whole folder is a few hundred KB of
app code and the vendored bundles). Names are checked segment by segment (letters, digits,
``.``, ``_``, ``-``; no leading dot), so nothing outside the folder can be named.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tgateway.http.openapi import Op, Param, Reply, Route, Schema

__all__ = ["StaticFiles", "StaticFile"]

IMMUTABLE = b"public, max-age=31536000, immutable"
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json",
}


def _type_of(name: str) -> str:
    ext = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    return TYPES.get(ext, "application/octet-stream")


def _schema_of(content_type: str) -> Schema:
    if content_type == "application/json":
        return {"type": "object"}  # the manifest (source maps too)
    if content_type.startswith(("text/", "image/svg")):
        return {"type": "string"}
    return {"type": "string", "format": "binary"}


@dataclass(frozen=True)
class StaticFile:
    data: bytes
    content_type: str
    etag: bytes


def _walk(folder: Traversable, prefix: str = "") -> dict[str, Traversable]:
    out: dict[str, Traversable] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            out.update(_walk(entry, name + "/"))
        else:
            out[name] = entry
    return out


class StaticFiles(Resource):
    """``/static/``: mount it with ``MountRoot.mount("/static", ...)``."""

    isLeaf = True

    def __init__(self, folder: Traversable | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._folder = folder or resources.files("tgateway.web") / "static"
        self._cache: dict[str, StaticFile] = {}
        app = _walk(self._folder / "app")
        digest = hashlib.sha256()
        for name in sorted(app):
            digest.update(name.encode() + b"\0" + app[name].read_bytes() + b"\0")
        self.build = digest.hexdigest()[:12]
        self.app_prefix = f"/static/app-{self.build}"
        self._vendor_manifest: dict[str, Any] = json.loads(
            (self._folder / "vendor" / "MANIFEST.json").read_text())

    def vendor_urls(self) -> dict[str, str]:
        """Role (``hls``, ``webtorrent``, ``nostr``, ``qr``, ...) -> URL of the vendored file."""
        return {entry["role"]: f"/static/vendor/{name}"
                for name, entry in self._vendor_manifest["files"].items()}

    def routes(self) -> list[Route]:
        """The OpenAPI description of what this serves: one route per folder, its ``name``
        one of the files there (the names are fixed when the gateway starts)."""
        out = []
        for folder, prefix, what in (("vendor", "/static/vendor", "A vendored browser library "
                                      "(or its manifest and licences)"),
                                     ("app", self.app_prefix, "A file of the web interface")):
            by_dir: dict[str, list[str]] = {}
            for name in _walk(self._folder / folder):
                head, _, leaf = name.rpartition("/")
                if all(_SEGMENT.match(s) for s in name.split("/")):
                    by_dir.setdefault(head, []).append(leaf)
            for sub, names in sorted(by_dir.items()):
                types = sorted({_type_of(n) for n in names})
                content: dict[str, Schema] = {t: _schema_of(t) for t in types}
                path = "/".join(p for p in (prefix, sub) if p) + "/<name>"
                out.append(Route(path, ["GET", "HEAD"], Op(
                    what + (f" ({sub}/)" if sub else ""), tags=("web",),
                    name="_".join(["static", folder, *sub.lower().split("/")]).rstrip("_"),
                    description="Cached for a year as immutable: a changed file has a new URL "
                                "(a library's version is in its name; the interface's files are "
                                "under a digest of them all).",
                    params=[Param("name", "path", {"type": "string", "enum": sorted(names)})],
                    replies={200: Reply("the file", content=content, headers={
                                 "ETag": {"type": "string", "required": True},
                                 "Cache-Control": {"type": "string", "required": True}}),
                             304: Reply("If-None-Match names the file's ETag")},
                    errors={404: "no such static file"})))
        return out

    def _lookup(self, segments: list[str]) -> StaticFile | None:
        if not segments or not all(_SEGMENT.match(s) for s in segments):
            return None
        head, rest = segments[0], segments[1:]
        if head == "vendor":
            folder = "vendor"
        elif head == f"app-{self.build}":
            folder = "app"
        else:
            return None
        key = "/".join([folder, *rest])
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        path = self._folder.joinpath(folder, *rest)
        if not rest or not path.is_file():
            return None
        data = path.read_bytes()
        f = StaticFile(data, _type_of(rest[-1]),
                       b'"' + hashlib.sha256(data).hexdigest()[:32].encode() + b'"')
        self._cache[key] = f
        return f

    def render_GET(self, request: Any) -> Any:
        try:
            segments = [s.decode("ascii") for s in request.postpath]
        except UnicodeDecodeError:
            segments = []
        f = self._lookup(segments)
        if f is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            return json.dumps({"error": "not_found", "message": "no such static file"}).encode()
        request.setHeader(b"content-type", f.content_type.encode())
        request.setHeader(b"cache-control", IMMUTABLE)
        request.setHeader(b"etag", f.etag)
        if request.getHeader(b"if-none-match") == f.etag:
            request.setResponseCode(304)
            request.finish()
            return NOT_DONE_YET
        request.setHeader(b"content-length", str(len(f.data)).encode())
        return b"" if request.method == b"HEAD" else f.data

    render_HEAD = render_GET
