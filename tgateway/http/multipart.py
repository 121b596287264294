"""Streaming ``multipart/form-data`` reader (RFC 7578 over the RFC 2046 multipart syntax).

Fed the body in pieces of any size, it calls ``on_part(name, filename, content_type)`` at the
start of each part and hands the part's bytes to the sink that call returned, as slices
(memoryviews) of the pieces it was fed: the bytes of a file are not copied on their way
through. The delimiter ``CRLF--boundary`` is searched with the C library's ``memmem``, several
GB/s: form parsers that scan byte by byte and copy every piece (streaming-form-data, multipart)
took a third of a core per GiB of upload, more than the rest of the request thread's work.

Part headers are parsed by the standard library's e-mail header parser (quoted strings,
RFC 2231 ``filename*``); a header block is limited to :data:`MAX_HEADERS` bytes and a body
to :data:`MAX_PARTS` parts. Every malformation is a :class:`~tgateway.errors.BadRequest` with
code ``invalid_multipart``; :meth:`MultipartReader.close` fails unless the closing delimiter
was seen.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from email.parser import HeaderParser
from email.policy import HTTP
from typing import Any

from tgateway.errors import BadRequest

MAX_HEADERS = 16 * 1024  # one part's header block
MAX_PARTS = 64
SCAN_MIN = 4096  # below this, bytes.find on a copy is as fast as a memmem call

Sink = Callable[[memoryview], None]


def _load_memmem() -> Any:
    try:
        fn = ctypes.CDLL(None).memmem  # the process's own symbols, the C library among them
    except (OSError, AttributeError):  # no memmem there: bytes.find on copies
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    return fn


_memmem = _load_memmem()


def find(view: memoryview, needle: bytes, start: int = 0) -> int:
    """Offset of the first ``needle`` in ``view[start:]`` (an offset into ``view``), or -1."""
    n = len(view) - start
    if n < len(needle):
        return -1
    base = None
    anchor: Any = None
    if _memmem is not None and n >= SCAN_MIN:
        if not view.readonly:
            anchor = ctypes.c_char.from_buffer(view)  # pins the buffer during the call
            base = ctypes.addressof(anchor)
        elif isinstance(view.obj, bytes) and view.nbytes == len(view.obj):
            anchor = ctypes.c_char_p(view.obj)  # points into the bytes object, no copy
            base = ctypes.cast(anchor, ctypes.c_void_p).value
    if base is None:
        hit = bytes(view[start:]).find(needle)
        return hit + start if hit >= 0 else -1
    try:
        found = _memmem(base + start, n, needle, len(needle))
    finally:
        del anchor
    return -1 if found is None else found - base


def _bad(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_multipart")


def _discard(_: memoryview) -> None:
    pass


_PREAMBLE, _DELIMITER, _HEADERS, _DATA, _EPILOGUE = range(5)


class MultipartReader:
    """Push parser: ``feed`` pieces of the body, then ``close``.

    ``on_part(name, filename, content_type)`` returns the sink for that part's bytes (or None to
    skip the part). Sinks get memoryviews valid only during the call. Exceptions raised by a
    callback pass through ``feed`` unchanged.
    """

    def __init__(self, boundary: bytes, on_part: Callable[[str, str | None, str | None], Sink | None]) -> None:
        if not 0 < len(boundary) <= 200:
            raise _bad("the multipart boundary must be 1 to 200 characters")
        self.on_part = on_part
        self.delimiter = b"\r\n--" + boundary
        self.parts = 0
        self._state = _PREAMBLE
        self._sink: Sink = _discard
        # bytes at the end of the last piece that may begin a delimiter; the body is read as if
        # it began with CRLF, so that a delimiter on its first line is found like any other
        self._held = b"\r\n"
        self._pending = bytearray()  # delimiter line / header block being collected

    def feed(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            if self._state in (_PREAMBLE, _DATA):
                pos = self._scan(view, pos)
            elif self._state == _DELIMITER:
                pos = self._after_delimiter(view, pos)
            elif self._state == _HEADERS:
                pos = self._headers(view, pos)
            else:  # epilogue: ignored (RFC 2046)
                return

    def feeding(self, sink: Sink) -> bool:
        """Whether the next bytes fed, up to the next delimiter, go to ``sink`` from their
        first byte on (in a part's data, nothing held back from the last piece): a caller
        can then receive them where that sink wants them."""
        return self._state == _DATA and not self._held and self._sink == sink

    def close(self) -> None:
        if self._state != _EPILOGUE:
            raise _bad("the multipart body has no closing boundary")

    # part data ------------------------------------------------------------------------

    def _partial(self, buf: bytes) -> int:
        """Where the earliest possible start of a delimiter cut off by the end of ``buf`` is
        (``buf[s:]`` is a proper prefix of the delimiter), or ``len(buf)``."""
        start = buf.find(b"\r")
        while start >= 0 and not self.delimiter.startswith(buf[start:]):
            start = buf.find(b"\r", start + 1)
        return len(buf) if start < 0 else start

    def _scan(self, view: memoryview, pos: int) -> int:
        """Give the sink the bytes before the next delimiter; returns where reading goes on."""
        delim = self.delimiter
        m = len(delim)
        if self._held:
            held, k = self._held, len(self._held)
            self._held = b""
            joined = held + bytes(view[pos:pos + m - 1])
            hit = joined.find(delim)  # can only begin inside ``held``
            if hit >= 0:
                self._emit(memoryview(joined)[:hit])
                return self._delimiter_found(pos + hit + m - k)
            if len(joined) < k + m - 1:  # this piece ended before the question was settled
                cut = self._partial(joined)
                self._emit(memoryview(joined)[:cut])
                self._held = joined[cut:]
                return len(view)
            self._emit(memoryview(held))
        hit = find(view, delim, pos)
        if hit >= 0:
            self._emit(view[pos:hit])
            return self._delimiter_found(hit + m)
        tail_start = max(pos, len(view) - (m - 1))
        tail = bytes(view[tail_start:])
        cut = tail_start + self._partial(tail)
        self._emit(view[pos:cut])
        self._held = tail[cut - tail_start:]
        return len(view)

    def _emit(self, view: memoryview) -> None:
        if self._state == _DATA and len(view):
            self._sink(view)

    def _delimiter_found(self, pos: int) -> int:
        self._state = _DELIMITER
        self._sink = _discard
        self._pending.clear()
        return pos

    # delimiter line and part headers --------------------------------------------------

    def _after_delimiter(self, view: memoryview, pos: int) -> int:
        """After ``CRLF--boundary``: ``--`` ends the body; otherwise optional spaces or tabs,
        then CRLF, then the next part's headers."""
        pending = self._pending
        while pos < len(view):
            pending.append(view[pos])
            pos += 1
            if pending == b"--":
                self._state = _EPILOGUE
                return len(view)
            if pending.endswith(b"\r\n") and not pending[:-2].strip(b" \t"):
                pending.clear()
                self._state = _HEADERS
                return pos
            padding = pending[:-1] if pending.endswith(b"\r") else pending
            if pending != b"-" and (padding.strip(b" \t") or len(pending) > 256):
                raise _bad("a multipart boundary is followed by something other than a line break")
        return pos

    def _headers(self, view: memoryview, pos: int) -> int:
        """Collect a part's header block (up to the empty line) and start the part."""
        pending = self._pending
        before = len(pending)
        pending += view[pos:pos + MAX_HEADERS + 4 - before]
        if pending.startswith(b"\r\n"):  # a part without headers
            end, text = 2, b""
        else:
            idx = pending.find(b"\r\n\r\n")
            if idx < 0:
                if len(pending) >= MAX_HEADERS + 4:
                    raise _bad(f"a multipart part has more than {MAX_HEADERS} bytes of headers")
                return pos + len(pending) - before
            end, text = idx + 4, bytes(pending[:idx])
        pending.clear()
        self._start_part(text)
        return pos + end - before

    def _start_part(self, text: bytes) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise _bad(f"a multipart body may have at most {MAX_PARTS} parts")
        headers = HeaderParser(policy=HTTP).parsestr(text.decode("utf-8", "replace"))
        if headers.defects:
            raise _bad("malformed multipart part headers")
        disposition = headers.get("content-disposition")
        if disposition is None or disposition.content_disposition != "form-data":
            raise _bad("a multipart part has no 'Content-Disposition: form-data' header")
        name = disposition.params.get("name")
        if not name:
            raise _bad("a multipart part has no field name")
        ctype = headers.get("content-type")
        sink = self.on_part(str(name), headers.get_filename(), str(ctype.content_type) if ctype else None)
        self._sink = sink or _discard
        self._state = _DATA
