"""MountRoot: the longest matching mount wins; a mount with ``when`` takes only the paths it
chooses, the others go on to a shorter mount or the default; Klein apps see the full path."""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.web.resource import Resource

from tgateway.http.root import MountRoot


class Echo(Resource):
    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def render_GET(self, request: Any) -> bytes:
        return f"{self.name} {b'/'.join(request.postpath).decode()}".encode()


def get(root: MountRoot, path: str) -> bytes:
    out: list[Any] = []
    StubTreq(root).get("http://x" + path).addCallback(lambda r: r.content()).addBoth(out.append)
    assert out and isinstance(out[0], bytes), out
    return out[0]


def test_longest_prefix_then_when_then_default() -> None:
    root = MountRoot(Echo("default"))
    root.mount("/api/users", Echo("users"), whole_path=True)
    root.mount("/api/users/me/files", Echo("stream"), whole_path=True,
               when=lambda path: path[-1] == b"transcoding-status")
    root.mount("/api/files", Echo("announce"), whole_path=True,
               when=lambda path: len(path) == 4 and path[3] == b"announce")
    root.mount("/announce", Echo("tracker"))
    assert get(root, "/api/users/me/files/ab/transcoding-status") == \
        b"stream api/users/me/files/ab/transcoding-status"
    assert get(root, "/api/users/me/files/ab") == b"users api/users/me/files/ab"
    assert get(root, "/api/files/ab/announce") == b"announce api/files/ab/announce"
    assert get(root, "/api/files/ab/announce/") == b"announce api/files/ab/announce/"
    assert get(root, "/api/files/ab") == b"default api/files/ab"
    assert get(root, "/announce/x") == b"tracker x"  # a prefix mount sees the rest
    assert get(root, "/api/webseed/ab/f") == b"default api/webseed/ab/f"
