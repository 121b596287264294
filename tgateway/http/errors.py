"""JSON errors at the HTTP boundary: ApiError -> {"error": code, "message": message}."""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from twisted.logger import Logger
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from tgateway.errors import ApiError

log = Logger()


def write_error(request: Any, error: ApiError) -> bytes:
    request.setResponseCode(error.status)
    request.setHeader(b"content-type", b"application/json")
    for name, value in error.headers.items():
        request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
    return json.dumps(error.to_json()).encode("utf-8")


def install_error_handlers(app: Klein) -> None:
    """Map ApiError, routing misses and unexpected exceptions to the stable JSON shape.

    Handlers take ``*args`` because a Klein app bound to a class passes the instance first.
    """

    @app.handle_errors(ApiError)
    def api_error(*args: Any) -> bytes:
        request, failure = args[-2:]
        return write_error(request, failure.value)

    @app.handle_errors(NotFound)
    def not_found(*args: Any) -> bytes:
        request, failure = args[-2:]
        return write_error(request, ApiError("no such route", status=404, code="not_found"))

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(*args: Any) -> bytes:
        request, failure = args[-2:]
        allowed = getattr(failure.value, "valid_methods", None) or []
        err = ApiError("method not allowed", status=405, code="method_not_allowed",
                       headers={"Allow": ", ".join(allowed)} if allowed else None)
        return write_error(request, err)

    @app.handle_errors(HTTPException)
    def http_exception(*args: Any) -> bytes:
        request, failure = args[-2:]
        exc = failure.value
        return write_error(request, ApiError(exc.description or exc.name, status=exc.code or 400,
                                             code=(exc.name or "error").lower().replace(" ", "_")))

    @app.handle_errors(Exception)
    def unexpected(*args: Any) -> bytes | None:
        request, failure = args[-2:]
        from twisted.internet.defer import CancelledError

        if failure.check(CancelledError):
            return None  # the client went away
        log.failure("unhandled error on {method} {uri}", failure,
                    method=request.method, uri=request.uri)
        return write_error(request, ApiError("internal server error", status=500, code="internal"))
