"""The web interface's HTML pages on ``gateway.port``: ``/`` (upload), ``/f/<sha256>`` (a file
with every face), ``/me`` (my files), ``/admin`` and ``/admin/<view>`` (the operator's pages).

Pages are rendered here from ``templates/`` (``string.Template``; every value is HTML-escaped)
inside one layout: header with the navigation and the account button, the sign-in dialog, the
page's ``<main>``, and the public configuration as a JSON data block (not a script: the CSP
allows no inline script). The page's behaviour is in ES modules under ``static/app/js/``
(``main.js`` picks the page's module from ``<body data-page>``).

What a person needs without JavaScript is in the HTML: the file page carries the facts and every
link (download, ``.torrent``, magnet, webseed, Blossom, ``blossom:`` URI); the upload form posts
one file to ``/api/upload``.

Navigation is a list of :class:`Section`; a section with ``needs="admin"`` is rendered hidden
and shown by the page when the session says the user is an admin (``GET /api/auth/session``
answering ``"admin": true``). The admin pages are that section: one page per view of
:data:`ADMIN_VIEWS` (its own sub-navigation), filled by the browser from the admin API
(``/api/admin/...``) with the signed-in key's session. The HTML is the same for everyone; what
an admin sees comes only from the API, so a non-admin who opens one gets the API's 403 message.
"""

from __future__ import annotations

import functools
import html
import json
import time
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

from twisted.logger import Logger

from tgateway.http.app import new_app
from tgateway.http.openapi import HEX64, Op, Param, Reply, Schema, route

__all__ = ["ADMIN_VIEWS", "Pages", "Section", "SECTIONS", "format_size"]


@dataclass(frozen=True)
class Section:
    key: str
    path: str
    label: str
    needs: str | None = None  # "admin": shown only to admins


SECTIONS: tuple[Section, ...] = (
    Section("upload", "/", "Upload"),
    Section("me", "/me", "My files"),
    Section("admin", "/admin", "Admin", needs="admin"),
)

#: the admin pages: ``(view, path, label)``, in the order of their sub-navigation
ADMIN_VIEWS: tuple[tuple[str, str, str], ...] = (
    ("dashboard", "/admin", "Dashboard"),
    ("users", "/admin/users", "Users"),
    ("files", "/admin/files", "Files"),
    ("reports", "/admin/reports", "Reports"),
    ("blocked", "/admin/blocked", "Block list"),
    ("transcode", "/admin/transcode", "Transcoding"),
    ("retention", "/admin/retention", "Retention"),
    ("audit", "/admin/audit", "Audit log"),
)

_HEX = frozenset("0123456789abcdef")

#: an HTML page as the OpenAPI documents describe it (not JSON: a page for people)
_HTML: Schema = {"type": "string", "contentMediaType": "text/html"}
_PAGE_HEADERS: dict[str, Schema] = {
    "Content-Security-Policy": {"type": "string", "required": True,
                                "description": "scripts only from the gateway"}}


def _page_op(summary: str, description: str, **kw: Any) -> Op:
    return Op(summary, tags=("web",), description=description, replies={
        200: Reply("the page (HTML)", content={"text/html": _HTML}, headers=_PAGE_HEADERS),
        **kw.pop("replies", {})}, **kw)


@functools.cache
def _template(name: str) -> Template:
    return Template((resources.files("tgateway.web") / "templates" / name).read_text("utf-8"))


def format_size(n: int) -> str:
    """Bytes in SI units, as the page shows them (``format.js`` does the same)."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 1000 or unit == "PB":
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def faces(described: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(key, label, url)`` of every way to get a file, in the order the page shows them."""
    urls = described["urls"]
    out = [
        ("magnet", "Magnet link", described["magnet"]),
        ("torrent", ".torrent file", urls["torrent"]),
        ("download", "Direct download", urls["download"]),
        ("webseed", "Webseed (BEP 19)", urls["webseed"]),
        ("stream", "Stream", urls["stream"]),
    ]
    if urls.get("blossom"):
        out.append(("blossom", "Blossom URL", urls["blossom"]))
    if described.get("blossom_uri"):
        out.append(("blossom_uri", "blossom: URI (BUD-10)", described["blossom_uri"]))
    out.append(("metadata", "Metadata (JSON)", urls["metadata"]))
    return out


def _faces_html(described: dict[str, Any]) -> str:
    e = functools.partial(html.escape, quote=True)
    return "\n".join(
        f'      <li class="face" data-face="{e(key)}"><span class="face-label">{e(label)}</span>'
        f' <a class="face-url" href="{e(url)}">{e(url)}</a></li>'
        for key, label, url in faces(described)
    )


def _json_block(value: Any) -> str:
    """JSON for a ``<script type="application/json">`` block: ``<`` escaped, so no ``</script>``
    in a file name can end the block."""
    return json.dumps(value).replace("<", "\\u003c")


class Pages:
    """Klein routes of the pages. ``public`` is the page configuration
    (:func:`tgateway.web.ui_config.public_config`), ``csp`` the pages' policy."""

    app = new_app(not_found="no such page")
    log = Logger()

    def __init__(self, *, store: Any, links: Any, public: dict[str, Any], csp: bytes,
                 sections: tuple[Section, ...] = SECTIONS) -> None:
        self.store = store
        self.links = links
        self.public = public
        self.csp = csp
        self.sections = sections
        self._config_json = _json_block(public)

    # rendering ------------------------------------------------------------------------

    def _nav(self, current: str) -> str:
        items = []
        for s in self.sections:
            attrs = ' aria-current="page"' if s.key == current else ""
            hidden = f' hidden data-needs="{html.escape(s.needs)}"' if s.needs else ""
            items.append(f'      <li{hidden}><a href="{html.escape(s.path)}"{attrs}>'
                         f"{html.escape(s.label)}</a></li>")
        return "\n".join(items)

    def _page(self, request: Any, *, page: str, title: str, main: str, status: int = 200,
              nav_current: str | None = None) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-security-policy", self.csp)
        request.setHeader(b"referrer-policy", b"same-origin")
        request.setHeader(b"cache-control", b"no-cache")
        body = _template("layout.html").substitute(
            title=html.escape(title), app=html.escape(self.public["app"]), page=page,
            config_json=self._config_json, nav=self._nav(nav_current or page), main=main)
        return body.encode("utf-8")

    # pages ------------------------------------------------------------------------------

    @route(app, "/", methods=["GET"], op=_page_op(
        "The upload page", "The web interface's start: upload files (a form that posts to "
        "/api/upload without JavaScript), sign in with Nostr.", name="page_upload"))
    def upload(self, request: Any) -> bytes:
        limit = self.public["upload"]["max_size"]
        main = _template("upload.html").substitute(
            limit=html.escape(f"up to {format_size(limit)} each"),
            anonymous_hint=html.escape(
                "Anyone may upload here; sign in to keep a list of your files and delete them."
                if self.public["upload"]["anonymous"] else "Sign in to upload."))
        return self._page(request, page="upload", title="Upload", main=main)

    @route(app, "/me", methods=["GET"], op=_page_op(
        "The \"my files\" page", "The signed-in user's files (the page reads them from "
        "/api/users/me/files with the session it holds).", name="page_me"))
    def me(self, request: Any) -> bytes:
        return self._page(request, page="me", title="My files", main=_template("me.html").substitute())

    @route(app, "/admin", methods=["GET"], op=_page_op(
        "The admin pages: the dashboard", "For the keys of admin.pubkeys (the page signs in "
        "and calls /api/admin/ with the session; the HTML itself is the same for anyone).",
        name="page_admin"))
    def admin(self, request: Any) -> bytes:
        return self._admin(request, "dashboard")

    @route(app, "/admin/<view>", methods=["GET"], op=_page_op(
        "An admin page", "One view of the admin pages (over the admin API).",
        name="page_admin_view",
        params=[Param("view", "path", {"type": "string", "enum": [v[0] for v in ADMIN_VIEWS]})],
        replies={404: Reply("no such admin page: an HTML page saying so",
                            content={"text/html": _HTML}, headers=_PAGE_HEADERS)}))
    def admin_view(self, request: Any, view: str) -> bytes:
        return self._admin(request, view)

    def _admin(self, request: Any, view: str) -> bytes:
        found = next((v for v in ADMIN_VIEWS if v[0] == view), None)
        if found is None:
            main = _template("error.html").substitute(
                heading="No such page", message=html.escape("The admin pages are listed at /admin."))
            return self._page(request, page="error", title="Not found", main=main, status=404)
        items = []
        for key, path, label in ADMIN_VIEWS:
            current = ' aria-current="page"' if key == view else ""
            items.append(f'    <li><a href="{html.escape(path)}"{current}>{html.escape(label)}</a></li>')
        main = _template("admin.html").substitute(view=view, heading=html.escape(found[2]),
                                                  subnav="\n".join(items))
        return self._page(request, page="admin", title=f"Admin · {found[2]}", main=main,
                          nav_current="admin")

    @route(app, "/f/<sha256>", methods=["GET"], op=_page_op(
        "A file's page", "Every face of a stored file (download, .torrent, magnet, webseed, "
        "stream, Blossom), the player, the swarm and the owner's actions.", name="page_file",
        params=[Param("sha256", "path", {"type": "string", "pattern": HEX64},
                      description="the file's SHA-256 (64 hex digits, either case)")],
        replies={404: Reply("no such file: an HTML page saying so",
                            content={"text/html": _HTML}, headers=_PAGE_HEADERS)}))
    async def file(self, request: Any, sha256: str) -> bytes:
        sha = sha256.lower()
        f = await self.store.get(sha) if len(sha) == 64 and set(sha) <= _HEX else None
        if f is None:
            main = _template("error.html").substitute(
                heading="No such file",
                message=html.escape("No file with this SHA-256 is stored here (or it was deleted)."))
            return self._page(request, page="error", title="Not found", main=main, status=404)
        owners = await self.store.owners(f.sha256)
        described = self.links.describe(f, authors=[o.owner for o in owners])
        titled = next((o for o in owners if o.title), None)
        described_by = next((o for o in owners if o.description), None)
        e = functools.partial(html.escape, quote=True)
        uploaded = time.gmtime(f.created_at)
        main = _template("file.html").substitute(
            sha256=e(f.sha256),
            info_hash=e(f.info_hash),
            heading=e(titled.title if titled and titled.title else f.name),
            subtitle=e(f"{format_size(f.size)} · {f.mime}"),
            description=e(described_by.description if described_by and described_by.description else ""),
            name=e(f.name),
            size=e(format_size(f.size)),
            size_bytes=e(str(f.size)),
            mime=e(f.mime),
            uploaded_iso=time.strftime("%Y-%m-%dT%H:%M:%SZ", uploaded),
            uploaded=time.strftime("%Y-%m-%d %H:%M UTC", uploaded),
            download=e(described["urls"]["download"]),
            torrent=e(described["urls"]["torrent"]),
            magnet=e(described["magnet"]),
            faces=_faces_html(described),
            file_json=_json_block(described),
        )
        return self._page(request, page="file", title=titled.title if titled and titled.title else f.name,
                          main=main)

