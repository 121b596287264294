"""The resource tree of one HTTP port: mounted sub-resources first, the Klein API for the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, Resource

from .site import StreamingSite
from .stats import HttpStats

if TYPE_CHECKING:
    from .openapi import Route

Chosen = Callable[[Sequence[bytes]], bool]


class MountRoot(Resource):
    """Dispatches on leading path segments to mounted resources; everything else goes to
    ``default`` with the path untouched (Klein routes see the full path).

    The longest mounted prefix that matches wins; a mount with a ``when`` takes only requests
    whose path segments (all of them, empty ones dropped) satisfy it, the others go on to a
    shorter prefix or the default (two apps sharing ``/api/files``: the one that has
    ``/api/files/<sha256>/announce`` and the file API)."""

    def __init__(self, default: IResource) -> None:
        super().__init__()
        self._default = default
        self._mounts: dict[tuple[bytes, ...], list[tuple[IResource, bool, Chosen | None]]] = {}
        self._prefixes: list[tuple[bytes, ...]] = []  # longest first
        self._described: list[tuple[str, IResource, Sequence[Route]]] = []

    def mount(self, path: str, resource: IResource, *, whole_path: bool = False,
              when: Chosen | None = None, routes: Sequence[Route] = ()) -> None:
        """Mount ``resource`` at ``/a/b``. ``whole_path``: a Klein app whose routes carry the
        full path; otherwise it sees the rest of the path as its postpath. ``routes``: the
        description of a resource that is not a Klein app (:mod:`tgateway.http.openapi`)."""
        prefix = tuple(s.encode() for s in path.strip("/").split("/"))
        self._mounts.setdefault(prefix, []).append((resource, not whole_path, when))
        self._prefixes = sorted(self._mounts, key=len, reverse=True)
        self._described.append((path, resource, routes))

    def entries(self) -> Iterator[tuple[str, IResource, Sequence[Route]]]:
        """The default resource (at ``/``) and every mount, with the routes it was described
        by: what the port's OpenAPI document is built from."""
        yield "/", self._default, ()
        yield from self._described

    def getChildWithDefault(self, name: bytes, request: Any) -> IResource:
        segments = (name, *request.postpath)
        for prefix in self._prefixes:
            if segments[: len(prefix)] != prefix:
                continue
            for resource, consume, when in self._mounts[prefix]:
                if when is not None and not when([s for s in segments if s]):
                    continue
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


def build_site(
    api_resource: IResource,
    *,
    streaming_routes: list[tuple[bytes, bytes]],
    max_request_body: int,
    max_stream_body: int | None = None,
    clock: IReactorTime,
    stats: HttpStats | None = None,
) -> tuple[StreamingSite, MountRoot]:
    root = MountRoot(api_resource)
    site = StreamingSite(
        root,
        streaming_routes=streaming_routes,
        max_request_body=max_request_body,
        max_stream_body=max_stream_body,
        clock=clock,
        stats=stats,
    )
    site.displayTracebacks = False
    return site, root
