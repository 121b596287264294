"""Wiring of the web interface on ``gateway.port``: pages, static files, the JSON routes the
pages need. The gateway component (:mod:`tgateway.web.service`) calls :func:`build_ui` and puts
:meth:`WebUi.mounts` on its site.

Mount points: ``/`` (the upload page; every other path still goes to the file API), ``/f``,
``/me``, ``/admin``, ``/static``, ``/api/config``; and ``/api/files/<sha256>/swarm|transcoding|ownership``
(the rest of ``/api/files`` stays with the file API and the users' routes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tgateway.component import Components, Deps, Mount
from tgateway.http.auth import Authenticator

from .pages import Pages
from .static_files import StaticFiles
from .ui_api import UI_FILE_ROUTES, UiApi
from .ui_config import content_security_policy, public_config

__all__ = ["WebUi", "build_ui"]


@dataclass
class WebUi:
    pages: Pages
    api: UiApi
    static: StaticFiles
    public: dict[str, Any]

    def mounts(self) -> list[Mount]:
        pages = self.pages.app.resource()
        api = self.api.app.resource()
        return [
            *(Mount("gateway", path, pages, whole_path=True) for path in ("/", "/f", "/me", "/admin")),
            Mount("gateway", "/static", self.static, routes=self.static.routes()),
            Mount("gateway", "/api/config", api, whole_path=True),
            Mount("gateway", "/api/files", api, whole_path=True,
                  when=lambda path: len(path) == 4 and path[3] in UI_FILE_ROUTES),
        ]


def _swarm(components: Sequence[Any]) -> Callable[[bytes], tuple[int, int, int] | None]:
    """The tracker's scrape of one info-hash, looked up when asked (the components list is
    complete once the gateway serves); None when the tracker does not run."""
    built = Components(components)

    def swarm(info_hash: bytes) -> tuple[int, int, int] | None:
        tracker = built.tracker
        return None if tracker is None else tracker.store.scrape([info_hash])[0]

    return swarm


def build_ui(
    *,
    deps: Deps,
    auth: Authenticator,
    max_upload: int,
    transcoding: Callable[[Any], Awaitable[dict[str, Any]]] | None = None,
) -> WebUi:
    """``transcoding(stored_file)``: a file's transcoding status (``StreamApi.describe``), when
    the transcoder runs."""
    config, links = deps.config, deps.links
    static = StaticFiles()
    public = public_config(
        config, links, nostr=deps.nostr is not None,
        transcode=transcoding is not None and config.transcoding.enabled,
        max_upload=max_upload, app_prefix=static.app_prefix, vendor=static.vendor_urls())
    pages = Pages(store=deps.store, links=links, public=public, csp=content_security_policy(public))
    api = UiApi(store=deps.store, auth=auth, public=public, swarm=_swarm(deps.components),
                transcoding=transcoding)
    return WebUi(pages=pages, api=api, static=static, public=public)
