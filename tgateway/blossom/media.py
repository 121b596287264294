"""BUD-05 media optimisation: what ``PUT /media`` makes of an upload, with FFmpeg.

The server decides (BUD-05 leaves the how to it):

- a video (a video container by its first bytes, or a ``video/*`` type that FFmpeg can probe)
  becomes one H.264/AAC MP4 with ``+faststart`` and no metadata, through the transcode pipeline's
  own pieces: the probe (:mod:`tgateway.transcode.probe`), the rendition plan and FFmpeg argv
  (:func:`~tgateway.transcode.argv.plan_variants`, :func:`~tgateway.transcode.argv.encode_argv`)
  with the largest of ``transcoding.profiles`` (never upscaled; an H.264/AAC source that already
  fits is remuxed, not re-encoded) and the process runner
  (:func:`~tgateway.transcode.process.run_ffmpeg`);
- an image (JPEG, PNG, GIF, WebP, BMP, TIFF by their first bytes) is re-encoded without its
  metadata (EXIF, XMP, comments; an EXIF orientation is applied to the pixels first): a JPEG
  stays a JPEG, a GIF a GIF (animations kept), anything else becomes a PNG
  (:func:`~tgateway.transcode.argv.image_argv`);
- anything else is a 415.

Bounds (one request cannot hold the server): :data:`MAX_RUNNING` FFmpeg runs at once and
:data:`MAX_WAITING` uploads waiting for one (more: 503 with ``Retry-After``, answered before the
body is read); a video longer than :data:`MAX_DURATION` seconds is a 413; a run still going
after :data:`RUN_TIMEOUT` seconds is stopped (503).

The request body is written to a file in a folder of its own under ``transcoding.work_dir``
(hashed on the way: the token's ``x`` tag and ``X-SHA-256`` name the original) and the
optimised file is stored through the one upload handler as a new blob (:class:`LocalFile`). The
original is never stored: it is not a blob of this server, nothing announces it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from twisted.internet.defer import DeferredSemaphore
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

from tgateway.errors import PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType
from tgateway.transcode.argv import IMAGE_OUTPUTS, Profile, encode_argv, image_argv, plan_variants
from tgateway.transcode.outputs import copy_file, in_thread
from tgateway.transcode.probe import (
    ProbeError,
    looks_like_video,
    parse_ffmpeg_info,
    parse_ffprobe_json,
    probe_argv,
)
from tgateway.transcode.process import FFmpegCancelled, FFmpegFailed, IFFmpegReactor, run_ffmpeg
from tgateway.transcode.tools import FFmpegTools
from tgateway.uploads import Facts, OpenSink

MAX_RUNNING = 1
MAX_WAITING = 4
MAX_DURATION = 600.0
RUN_TIMEOUT = 600.0
HEAD_BYTES = 4096

_IMAGE_MAGIC = (
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"BM", "png"),
    (0, b"II*\x00", "png"),
    (0, b"MM\x00*", "png"),
)

#: declared types ``HEAD /media`` accepts (before any byte is seen)
MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff")


def accepts_type(content_type: str) -> bool:
    """Whether ``HEAD /media`` would take a blob of this declared type (images above, any
    ``video/*``)."""
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence in MEDIA_TYPES or essence.startswith("video/")


@dataclass(frozen=True)
class Plan:
    """What to make of an upload: ``kind`` "image" (with an output ``fmt`` of
    :data:`IMAGE_OUTPUTS`) or "video" (an MP4)."""

    kind: str
    fmt: str = "mp4"

    @property
    def mime(self) -> str:
        return "video/mp4" if self.kind == "video" else IMAGE_OUTPUTS[self.fmt][2]

    @property
    def extension(self) -> str:
        return ".mp4" if self.kind == "video" else IMAGE_OUTPUTS[self.fmt][3]


def plan_for(head: bytes, declared: str | None) -> Plan | None:
    """The plan for an upload from its first bytes (the declared type only breaks a tie for
    video containers FFmpeg must probe). None: not media this server optimises (415)."""
    for offset, magic, fmt in _IMAGE_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return Plan("image", fmt)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Plan("image", "png")
    if looks_like_video(head, declared or ""):
        return Plan("video")
    return None


class BodyFile:
    """Receives a request body into a file (on the body's thread), hashing it on the way; more
    than ``max_size`` bytes is a 413."""

    def __init__(self, path: str, max_size: int) -> None:
        self.path = path
        self.max_size = max_size
        self.size = 0
        self.head = b""
        self._hash = hashlib.sha256()
        self._fh: BinaryIO | None = None

    def feed(self, data: Any) -> None:
        self.size += len(data)
        if self.size > self.max_size:
            raise PayloadTooLarge(f"media of more than {self.max_size} bytes")
        if self._fh is None:
            self._fh = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        if len(self.head) < HEAD_BYTES:
            self.head += bytes(data[:HEAD_BYTES - len(self.head)])
        self._hash.update(data)
        self._fh.write(data)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class IMediaReactor(IFFmpegReactor, IReactorThreads):
    """What the media optimiser needs of the reactor: timers, threads, FFmpeg processes."""


class LocalFile:
    """A file on disk as a source of the upload handler (:class:`tgateway.uploads.Source`):
    read on a thread, written into the sink on the reactor, paused while the ingest catches up."""

    def __init__(self, path: str, size: int, reactor: IReactorThreads, declared_type: str) -> None:
        self.path = path
        self.length: int | None = size
        self.reactor = reactor
        self.declared_type = declared_type

    async def pour(self, open_sink: OpenSink) -> Facts:
        await copy_file(self.path, open_sink(self.length),
                        lambda fn, *args: in_thread(self.reactor, fn, *args))
        return Facts(declared_type=self.declared_type)


class MediaOptimizer:
    """Runs the plan of one upload with FFmpeg; at most :data:`MAX_RUNNING` at once."""

    log = Logger()

    def __init__(self, *, reactor: IMediaReactor, tools: FFmpegTools, work_dir: str,
                 profiles: Sequence[Profile], preset: str = "veryfast",
                 segment: float = 4.0) -> None:
        self.reactor = reactor
        self.tools = tools
        self.work_dir = os.path.abspath(os.path.join(work_dir, "media"))
        # one rendition: the largest profile (plan_variants never upscales)
        self.profile = max(profiles, key=lambda p: p.height)
        self.preset = preset
        self.segment = segment
        self._slots = DeferredSemaphore(MAX_RUNNING)
        self.pending = 0  # uploads taken: receiving their body, waiting or running

    def reserve(self) -> None:
        """Take an upload, before its body is read, or refuse it (503) when
        :data:`MAX_RUNNING` + :data:`MAX_WAITING` are taken; :meth:`release` when it is done.
        This also bounds the originals on disk at once."""
        if self.pending >= MAX_WAITING + MAX_RUNNING:
            raise ServiceUnavailable("media optimisation is busy; retry later",
                                     code="media_busy", headers={"Retry-After": "10"})
        self.pending += 1

    def release(self) -> None:
        self.pending -= 1

    async def folder(self) -> str:
        """A new folder of its own for one upload (remove it with :meth:`discard`)."""
        path = os.path.join(self.work_dir, uuid.uuid4().hex)
        await in_thread(self.reactor, os.makedirs, path, 0o700, True)
        return path

    async def discard(self, folder: str) -> None:
        await in_thread(self.reactor, shutil.rmtree, folder, True)

    async def optimise(self, source: str, plan: Plan, folder: str) -> str:
        """Make the optimised file of ``source`` in ``folder``; returns its path. Raises 415
        (FFmpeg cannot read it as ``plan`` says), 413 (a video over :data:`MAX_DURATION`), 503
        (:data:`RUN_TIMEOUT`)."""
        await self._slots.acquire()
        try:
            if plan.kind == "video":
                return await self._video(source, folder)
            out = os.path.join(folder, "out" + plan.extension)
            await self._run(image_argv(self.tools.ffmpeg, "file:" + source, out, plan.fmt),
                            what="an image")
            return out
        finally:
            self._slots.release()

    async def _video(self, source: str, folder: str) -> str:
        argv = probe_argv(self.tools.ffmpeg, self.tools.ffprobe, "file:" + source)
        try:
            out, err = await self._run(argv, what="a video", keep=True)
            probe = parse_ffprobe_json(out) if self.tools.ffprobe else parse_ffmpeg_info(err)
        except _Unreadable as e:
            if self.tools.ffprobe:
                raise
            probe = self._info(e.stderr)  # ``ffmpeg -i`` alone always fails: it has no output
        except ProbeError as e:
            raise UnsupportedMediaType(f"not a playable video: {e}",
                                       code="unsupported_media") from None
        if probe.duration > MAX_DURATION:
            raise PayloadTooLarge(f"a video for /media is at most {MAX_DURATION:g} s long "
                                  f"(this one is {probe.duration:g} s): upload it with PUT /upload",
                                  code="media_too_long")
        [variant] = plan_variants(probe, [self.profile])
        argv = encode_argv(self.tools.ffmpeg, "file:" + source, probe, [variant], folder,
                           preset=self.preset, segment=self.segment, progress=False)
        await self._run(argv, what="a video")
        return os.path.join(folder, variant.filename)

    @staticmethod
    def _info(stderr: str) -> Any:
        try:
            return parse_ffmpeg_info(stderr)
        except ProbeError as e:
            raise UnsupportedMediaType(f"not a playable video: {e}",
                                       code="unsupported_media") from None

    async def _run(self, argv: list[str], *, what: str, keep: bool = False) -> tuple[bytes, str]:
        """Run FFmpeg (stopped after :data:`RUN_TIMEOUT`); its stdout and stderr's tail."""
        run = run_ffmpeg(self.reactor, argv, keep_stdout=keep,
                         stderr_tail=256 * 1024 if keep else 4096)
        timer = self.reactor.callLater(RUN_TIMEOUT, run.cancel)
        try:
            out = await run.done
        except FFmpegCancelled:
            raise ServiceUnavailable(f"optimising {what} took longer than {RUN_TIMEOUT:g} s",
                                     code="media_timeout") from None
        except FFmpegFailed as e:
            raise _Unreadable(f"not {what} FFmpeg can read: {e.message}",
                              run.protocol.stderr_tail()) from None
        finally:
            if timer.active():
                timer.cancel()
        return out, run.protocol.stderr_tail()


class _Unreadable(UnsupportedMediaType):
    """FFmpeg failed on the input (415); ``stderr`` is what it said."""

    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message, code="unsupported_media")
        self.stderr = stderr


__all__ = ["MEDIA_TYPES", "BodyFile", "LocalFile", "MediaOptimizer", "Plan", "accepts_type",
           "plan_for"]
