"""The resource tree of one HTTP port: mounted sub-resources first, the Klein API for the rest."""

from __future__ import annotations

from typing import Any

from twisted.web.resource import IResource, Resource

from .body import StreamingSite


class MountRoot(Resource):
    """Dispatches on leading path segments to mounted resources; everything else goes to
    ``default`` with the path untouched (Klein routes see the full path)."""

    def __init__(self, default: IResource) -> None:
        super().__init__()
        self._default = default
        self._mounts: dict[tuple[bytes, ...], IResource] = {}

    def mount(self, path: str, resource: IResource) -> None:
        """Mount ``resource`` at ``/a/b`` (it sees the rest of the path as its postpath)."""
        segments = tuple(s.encode() for s in path.strip("/").split("/"))
        self._mounts[segments] = resource

    def getChildWithDefault(self, name: bytes, request: Any) -> IResource:
        segments = (name, *request.postpath)
        for prefix in sorted(self._mounts, key=len, reverse=True):
            if segments[: len(prefix)] == prefix:
                # consume the remaining prefix segments
                for _ in prefix[1:]:
                    request.prepath.append(request.postpath.pop(0))
                return self._mounts[prefix]
        request.postpath.insert(0, request.prepath.pop())
        return self._default

    def render(self, request: Any) -> Any:
        return self._default.render(request)


def build_site(
    api_resource: IResource,
    *,
    mounts: dict[str, IResource] | None = None,
    streaming_routes: list[tuple[bytes, bytes]],
    max_request_body: int,
    clock: Any,
) -> tuple[StreamingSite, MountRoot]:
    root = MountRoot(api_resource)
    for path, resource in (mounts or {}).items():
        root.mount(path, resource)
    site = StreamingSite(
        root,
        streaming_routes=streaming_routes,
        max_request_body=max_request_body,
        clock=clock,
    )
    site.displayTracebacks = False
    return site, root
