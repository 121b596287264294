"""Wiring of the web interface on ``gateway.port``: pages, static files, the JSON routes the
pages need. ``tap.py`` calls :func:`build_ui` and :meth:`WebUi.mount`.

Mount points: ``/`` (the upload page; every other path still goes to the file API), ``/f``,
``/me``, ``/static``, ``/api/config``; and ``/api/files/<sha256>/swarm|transcoding|ownership``
through :meth:`WebUi.files_split`, handed to the users' routes as the file API they split
``/api/files`` with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.web.resource import IResource

from tgateway.config import Config
from tgateway.http.auth import Authenticator
from tgateway.http.root import MountRoot, PathSplit
from tgateway.links import Links

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

    def files_split(self, files_api: IResource) -> IResource:
        """``/api/files/<sha256>/swarm|transcoding|ownership`` here, the rest to ``files_api``."""
        return PathSplit(lambda path: len(path) == 4 and path[3] in UI_FILE_ROUTES,
                         self.api.app.resource(), files_api)

    def mount(self, root: MountRoot) -> None:
        pages = self.pages.app.resource()
        for path in ("/", "/f", "/me"):
            root.mount_app(path, pages)
        root.mount("/static", self.static)
        root.mount_app("/api/config", self.api.app.resource())

    def set_transcoding(self, describe: Any) -> None:
        """The transcoder runs: ``describe(stored_file)`` gives a file's transcoding status."""
        self.api.transcoding = describe


def build_ui(
    *,
    config: Config,
    store: Any,
    links: Links,
    auth: Authenticator,
    components: frozenset[str],
    max_upload: int,
    tracker: Any = None,
) -> WebUi:
    static = StaticFiles()
    public = public_config(config, links, components=components, max_upload=max_upload,
                           app_prefix=static.app_prefix, vendor=static.vendor_urls())
    swarm = None
    if tracker is not None:
        def swarm(info_hash: bytes) -> tuple[int, int, int]:
            return tracker.store.scrape([info_hash])[0]  # type: ignore[no-any-return]
    pages = Pages(store=store, links=links, public=public, csp=content_security_policy(public))
    api = UiApi(store=store, auth=auth, public=public, swarm=swarm)
    return WebUi(pages=pages, api=api, static=static, public=public)
