"""Storing what FFmpeg wrote: a file of the work folder into the content store, read off the
reactor and paused while the store's workers catch up; a job's whole set of outputs (each
rendition's MP4, its HLS segments and rewritten playlist, the master playlist); the small file
reads and writes of a job (playlists, the head of an MP4), and the reactor's thread pool to run
them in."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool

from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredFile, UploadContext

from .api import Rendition
from .argv import (
    PlaylistEntry,
    Variant,
    avc_codecs,
    master_playlist,
    parse_media_playlist,
    rewrite_media_playlist,
)
from .probe import ProbeResult

__all__ = ["FlowSink", "Renditions", "copy_file", "in_thread", "read_head", "read_text",
           "store_file", "store_renditions", "write_text"]

PLAYLIST_MIME = "application/vnd.apple.mpegurl"
Thread = Callable[..., Deferred[Any]]  # run a blocking function off the reactor


def in_thread(reactor: IReactorFromThreads, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """``fn(*args)`` in the reactor's thread pool; inline for a reactor without one (tests)."""
    pool = getattr(reactor, "getThreadPool", None)
    if pool is None:
        try:
            return succeed(fn(*args))
        except Exception:
            return fail()
    return deferToThreadPool(reactor, pool(), fn, *args)


class FlowSink(Protocol):
    """Where :func:`copy_file` writes: an upload (``ContentStore.begin_upload``) or the upload
    handler's sink; it pauses the writer while its workers catch up."""

    def set_flow_control(self, pause: Callable[[], None], resume: Callable[[], None]) -> None: ...

    def write(self, data: bytes) -> None: ...


async def copy_file(path: str, sink: FlowSink, thread: Thread) -> None:
    """Write the file at ``path`` into ``sink``, read 1 MiB at a time on a thread, waiting
    while the sink has paused the flow."""
    waiting: list[Deferred[None]] = []

    def pause() -> None:
        waiting.append(Deferred())

    def resume() -> None:
        while waiting:
            waiting.pop().callback(None)

    sink.set_flow_control(pause, resume)
    fh = await thread(open, path, "rb")
    try:
        while data := await thread(fh.read, 1 << 20):
            sink.write(data)
            if waiting:
                await waiting[-1]
    finally:
        fh.close()


async def store_file(store: ContentStore, path: str, context: UploadContext, mime: str,
                     thread: Thread) -> StoredFile:
    """Put the file at ``path`` into ``store`` (an upload of exactly its size)."""
    size = await thread(os.path.getsize, path)
    ingest = store.begin_upload(size_hint=size, max_size=max(1, size))
    try:
        await copy_file(path, ingest, thread)
    except BaseException:
        await ingest.abort()
        raise
    event = await store.commit(ingest, context, declared_type=mime)
    return event.file


def read_head(path: str, size: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


Put = Callable[[str, str, str], Awaitable[StoredFile]]  # (path, name, MIME type): one output stored


@dataclass(frozen=True)
class Renditions:
    """A job's stored outputs: each rendition's facts (for the file's metadata), the renditions
    (for the video listener) and the master playlist."""

    variants: list[dict[str, Any]]
    renditions: tuple[Rendition, ...]
    master: StoredFile


async def store_renditions(f: StoredFile, probe: ProbeResult, variants: list[Variant], work: str,
                           *, thread: Thread, check: Callable[[], None], put: Put) -> Renditions:
    """Store every output a job wrote in ``work``: per rendition its MP4, its HLS segments and
    its playlist rewritten to name them by SHA-256 (what a Blossom server serves them as), then
    the master playlist. ``check`` raises when the job is cancelled (called between files)."""
    base = os.path.splitext(f.name)[0] or f.sha256
    out_variants = []
    renditions = []
    entries = []
    for v in variants:
        check()
        mp4 = await put(os.path.join(work, v.filename), f"{base} {v.name}.mp4", "video/mp4")
        head = await thread(read_head, os.path.join(work, v.filename), 1 << 20)
        codecs = avc_codecs(head, v.has_audio)
        hls_dir = os.path.join(work, "hls_" + v.name)
        text = await thread(read_text, os.path.join(hls_dir, "index.m3u8"))
        names: dict[str, str] = {}
        seg_shas = []
        peak = 0
        for duration, uri in parse_media_playlist(text):
            check()
            seg = await put(os.path.join(hls_dir, uri), f"{base} {v.name} {uri}", "video/mp2t")
            names[uri] = f"{seg.sha256}.ts"
            seg_shas.append(seg.sha256)
            if duration > 0.5:
                peak = max(peak, int(seg.size * 8 / duration))
        playlist_path = os.path.join(hls_dir, "playlist.m3u8")
        await thread(write_text, playlist_path, rewrite_media_playlist(text, names))
        playlist = await put(playlist_path, f"{base} {v.name}.m3u8", PLAYLIST_MIME)
        average = int(mp4.size * 8 / probe.duration) if probe.duration else 0
        peak = max(peak, average)
        entries.append(PlaylistEntry(uri=f"{playlist.sha256}.m3u8", bandwidth=peak,
                                     average_bandwidth=average, width=v.width,
                                     height=v.height, codecs=codecs, frame_rate=probe.fps))
        out_variants.append({
            "name": v.name, "width": v.width, "height": v.height, "mode": v.mode,
            "sha256": mp4.sha256, "size": mp4.size, "bitrate": average, "bandwidth": peak,
            "codecs": codecs, "playlist": playlist.sha256, "segments": seg_shas,
        })
        renditions.append(Rendition(v.name, mp4, v.width, v.height, average))
    master_path = os.path.join(work, "master.m3u8")
    await thread(write_text, master_path, master_playlist(entries))
    master = await put(master_path, f"{base}.m3u8", PLAYLIST_MIME)
    return Renditions(out_variants, tuple(renditions), master)
