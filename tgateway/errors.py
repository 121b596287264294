"""The one API error type.

Handlers raise :class:`ApiError` (or a subclass); the HTTP boundaries (``tgateway.http.errors``,
the Blossom app) turn it into ``{"error": code, "message": message}`` with ``status``. Protocol
front ends that have their own error format (bencoded ``failure reason``, Blossom ``X-Reason``)
read the same fields.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error meant for the client: HTTP status, stable machine code, human message."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class LengthRequired(ApiError):
    status = 411
    code = "length_required"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class RangeNotSatisfiable(ApiError):
    status = 416
    code = "range_not_satisfiable"


class TooManyRequests(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class InsufficientStorage(ApiError):
    status = 507
    code = "insufficient_storage"


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"
