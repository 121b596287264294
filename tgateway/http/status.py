"""A read-only JSON resource for component status (e.g. ``GET /api/dht/status``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource


class JsonStatus(Resource):
    isLeaf = True
    log = Logger()

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self._fn = fn

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"access-control-allow-origin", b"*")
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            return json.dumps({"error": "not_found", "message": "no such route"}).encode()
        try:
            body = self._fn()
        except Exception:
            self.log.failure("status failed")
            request.setResponseCode(500)
            return json.dumps({"error": "internal", "message": "status unavailable"}).encode()
        return json.dumps(body).encode()

    def render_HEAD(self, request: Any) -> bytes:
        return self.render_GET(request)
