"""JSON errors at the HTTP boundary: ApiError -> {"error": code, "message": message}.

One shape for every face (the gateway's API and Blossom): :func:`install_error_handlers` maps
ApiError, routing misses and unexpected exceptions to it. A face whose protocol adds something
to every error (Blossom: CORS and ``X-Reason``, BUD-01) passes ``decorate``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from tgateway.errors import ApiError

log = Logger()

#: adds a face's own headers to an error answer (called before the body is written)
Decorate = Callable[[Any, ApiError], None]


def write_error(request: Any, error: ApiError) -> bytes:
    request.setResponseCode(error.status)
    request.setHeader(b"content-type", b"application/json")
    for name, value in error.headers.items():
        request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
    return json.dumps(error.to_json()).encode("utf-8")


def install_error_handlers(
    app: Klein, *, decorate: Decorate | None = None, not_found: str = "no such route"
) -> None:
    """Map ApiError, routing misses and unexpected exceptions to the stable JSON shape.

    ``not_found``: the message of a request no route matches. Handlers take ``*args`` because a
    Klein app bound to a class passes the instance first.
    """

    def answer(request: Any, error: ApiError) -> bytes:
        if decorate is not None:
            decorate(request, error)
        return write_error(request, error)

    @app.handle_errors(ApiError)
    def api_error(*args: Any) -> bytes:
        request, failure = args[-2:]
        return answer(request, failure.value)

    @app.handle_errors(NotFound)
    def route_not_found(*args: Any) -> bytes:
        request, failure = args[-2:]
        return answer(request, ApiError(not_found, status=404, code="not_found"))

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(*args: Any) -> bytes:
        request, failure = args[-2:]
        allowed = getattr(failure.value, "valid_methods", None) or []
        err = ApiError("method not allowed", status=405, code="method_not_allowed",
                       headers={"Allow": ", ".join(allowed)} if allowed else None)
        return answer(request, err)

    @app.handle_errors(HTTPException)
    def http_exception(*args: Any) -> bytes:
        request, failure = args[-2:]
        exc = failure.value
        return answer(request, ApiError(exc.description or exc.name, status=exc.code or 400,
                                        code=(exc.name or "error").lower().replace(" ", "_")))

    @app.handle_errors(Exception)
    def unexpected(*args: Any) -> bytes | None:
        request, failure = args[-2:]
        if failure.check(CancelledError):
            return None  # the client went away
        log.failure("unhandled error on {method} {uri}", failure,
                    method=request.method, uri=request.uri)
        return answer(request, ApiError("internal server error", status=500, code="internal"))


__all__ = ["install_error_handlers", "write_error"]
