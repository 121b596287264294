"""The resource tree of one HTTP port: mounted sub-resources first, the Klein API for the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, Resource

from .site import StreamingSite


class MountRoot(Resource):
    """Dispatches on leading path segments to mounted resources; everything else goes to
    ``default`` with the path untouched (Klein routes see the full path)."""

    def __init__(self, default: IResource) -> None:
        super().__init__()
        self._default = default
        self._mounts: dict[tuple[bytes, ...], tuple[IResource, bool]] = {}

    def mount(self, path: str, resource: IResource) -> None:
        """Mount ``resource`` at ``/a/b``: it sees the rest of the path as its postpath."""
        self._mounts[self._segments(path)] = (resource, True)

    def mount_app(self, path: str, resource: IResource) -> None:
        """Send requests under ``/a/b`` to a Klein app whose routes carry the full path."""
        self._mounts[self._segments(path)] = (resource, False)

    @staticmethod
    def _segments(path: str) -> tuple[bytes, ...]:
        return tuple(s.encode() for s in path.strip("/").split("/"))

    def getChildWithDefault(self, name: bytes, request: Any) -> IResource:
        segments = (name, *request.postpath)
        for prefix in sorted(self._mounts, key=len, reverse=True):
            if segments[: len(prefix)] == prefix:
                resource, consume = self._mounts[prefix]
                if consume:
                    for _ in prefix[1:]:
                        request.prepath.append(request.postpath.pop(0))
                else:
                    request.postpath.insert(0, request.prepath.pop())
                return resource
        request.postpath.insert(0, request.prepath.pop())
        return self._default

    def render(self, request: Any) -> Any:
        return self._default.render(request)


class PathSplit(Resource):
    """One mount point shared by two Klein apps (both see the full path): a request whose path
    segments (after the mount point, empty ones dropped) satisfy ``chosen`` goes to ``when``,
    the rest to ``otherwise``."""

    isLeaf = True

    def __init__(self, chosen: Callable[[list[bytes]], bool], when: IResource, otherwise: IResource) -> None:
        super().__init__()
        self._chosen = chosen
        self._when = when
        self._otherwise = otherwise

    def render(self, request: Any) -> Any:
        path = [p for p in request.postpath if p]
        return (self._when if self._chosen(path) else self._otherwise).render(request)


def build_site(
    api_resource: IResource,
    *,
    mounts: dict[str, IResource] | None = None,
    streaming_routes: list[tuple[bytes, bytes]],
    max_request_body: int,
    max_stream_body: int | None = None,
    clock: IReactorTime,
) -> tuple[StreamingSite, MountRoot]:
    root = MountRoot(api_resource)
    for path, resource in (mounts or {}).items():
        root.mount(path, resource)
    site = StreamingSite(
        root,
        streaming_routes=streaming_routes,
        max_request_body=max_request_body,
        max_stream_body=max_stream_body,
        clock=clock,
    )
    site.displayTracebacks = False
    return site, root
