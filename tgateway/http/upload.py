"""Request bodies as upload sources (:class:`tgateway.uploads.Source`).

- :class:`RawBody`: the body is the file (``PUT /api/upload``, Blossom's ``PUT /upload``);
- :class:`MultipartBody`: a ``multipart/form-data`` form whose ``file`` part is the file and
  whose ``name``, ``title``, ``description`` and ``announce_dht`` fields describe it (other
  fields are read and dropped).

Both read the body on its own thread (``BodyStream.consume(threaded=True)``), a raw body
straight into the ingest's chunk buffers. ``body_sha256(result)`` is the SHA-256 of the whole
request body, for a NIP-98 ``payload`` check: for a raw body that is the file's, which the
ingest computes anyway; a form's is hashed as it arrives, only when asked (``hash_body``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from tgateway.errors import ApiError, BadRequest, PayloadTooLarge
from tgateway.storage.api import Received
from tgateway.uploads import Facts, OpenSink, Sink

from .body import BodyStream, body_error
from .multipart import MultipartReader

MULTIPART_SLACK = 64 * 1024  # form fields and part headers around the file
MAX_FIELD = 16 * 1024
FIELDS = ("announce_dht", "title", "description", "name")


def streamed_body(request: Any) -> BodyStream:
    """The request's streamed body (the route must be one of the Site's streaming routes)."""
    body: BodyStream | None = getattr(request, "body_stream", None)
    if body is None:
        raise ApiError("upload body is not streamed", status=500, code="internal")
    return body


def truthy(value: str | None, default: bool) -> bool:
    """A yes/no field; 400 ``invalid_field`` for anything else."""
    if value is None or value == "":
        return default
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"expected true or false, got {value!r}", code="invalid_field")


class RawBody:
    """A request body that is the file itself."""

    def __init__(self, body: BodyStream) -> None:
        self.body = body
        self.length = body.length

    async def pour(self, open_sink: OpenSink) -> Facts:
        sink = open_sink(self.length)
        try:
            await self.body.consume(sink.feed, threaded=True, into=sink.reserve)
        except BaseException as e:
            raise body_error(e) from None
        return Facts()

    def body_sha256(self, result: Received) -> str:
        return result.sha256


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a ``multipart/form-data`` Content-Type, or a 400."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip().strip('"')
            if 0 < len(value) <= 200:
                return value.encode("latin-1", "replace")
    raise BadRequest("multipart Content-Type without a boundary", code="invalid_multipart")


class _FieldTarget:
    """A small form field kept in memory, capped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.parts: list[bytes] = []
        self.size = 0
        self.seen = False

    def start(self) -> Callable[[memoryview], None]:
        if self.seen:
            raise BadRequest(f"form field {self.name!r} appears twice", code="invalid_multipart")
        self.seen = True
        return self.write

    def write(self, chunk: memoryview) -> None:
        self.size += len(chunk)
        if self.size > MAX_FIELD:
            raise BadRequest(f"form field {self.name!r} is too long", code="invalid_field")
        self.parts.append(bytes(chunk))

    @property
    def value(self) -> str | None:
        if not self.seen:
            return None
        try:
            return b"".join(self.parts).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"form field {self.name!r} is not UTF-8", code="invalid_field") from None


class _FileTarget:
    """The 'file' part of a form, fed straight into the upload's sink (on the body's thread)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.started = False
        self.filename: str | None = None
        self.content_type: str | None = None

    def start(self, filename: str | None, content_type: str | None) -> Callable[[memoryview], None]:
        if self.started:
            raise BadRequest("only one 'file' part is accepted", code="invalid_multipart")
        self.started = True
        self.filename, self.content_type = filename, content_type
        return self.sink.feed


class MultipartBody:
    """A ``multipart/form-data`` body with one ``file`` part.

    The whole body may be at most ``max_size + envelope`` bytes (413): a form cannot bring an
    unbounded stream in fields that are dropped, with or without a Content-Length.
    """

    def __init__(self, body: BodyStream, content_type: str, *, max_size: int,
                 envelope: int = MULTIPART_SLACK, hash_body: bool = False) -> None:
        self.body = body
        self.length = body.length
        self.boundary = boundary_of(content_type)
        self.cap = max_size + envelope
        self._hasher = hashlib.sha256() if hash_body else None
        self.received = 0

    async def pour(self, open_sink: OpenSink) -> Facts:
        file = _FileTarget(open_sink(self.length))
        fields = {n: _FieldTarget(n) for n in FIELDS}

        def on_part(name: str, filename: str | None, content_type: str | None) -> Any:
            if name == "file":
                return file.start(filename, content_type)
            field = fields.get(name)
            return field.start() if field is not None else None  # other fields are dropped

        reader = MultipartReader(self.boundary, on_part)
        hasher = self._hasher

        def on_data(data: Any) -> None:  # on the body's thread
            self.received += len(data)
            if self.received > self.cap:
                raise PayloadTooLarge(f"the form is larger than the limit of {self.cap} bytes")
            if hasher is not None:
                hasher.update(data)
            reader.feed(data)

        def into() -> memoryview | None:  # the file's bytes are received into its chunks
            return file.sink.reserve() if reader.feeding(file.sink.feed) else None

        try:
            await self.body.consume(on_data, threaded=True, into=into)
            if not file.started:
                raise BadRequest("the form has no 'file' part", code="missing_file")
            reader.close()
            return Facts(
                name=fields["name"].value or file.filename,
                title=fields["title"].value,
                description=fields["description"].value,
                announce_dht=truthy(fields["announce_dht"].value, True),
                declared_type=file.content_type,
            )
        except BaseException as e:
            raise body_error(e) from None

    def body_sha256(self, result: Received) -> str:
        if self._hasher is None:
            raise RuntimeError("the form's body was not hashed (hash_body=False)")
        return self._hasher.hexdigest()


__all__ = ["MULTIPART_SLACK", "MultipartBody", "RawBody", "boundary_of", "streamed_body", "truthy"]
