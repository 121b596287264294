"""Storing what FFmpeg wrote: a file of the work folder into the content store, read off the
reactor and paused while the store's workers catch up; the small file reads and writes of a job
(playlists, the head of an MP4), and the reactor's thread pool to run them in."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool

from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredFile, UploadContext

__all__ = ["in_thread", "read_head", "read_text", "store_file", "write_text"]

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


async def store_file(store: ContentStore, path: str, context: UploadContext, mime: str,
                     thread: Thread) -> StoredFile:
    """Put the file at ``path`` into ``store`` (an upload of exactly its size)."""
    size = await thread(os.path.getsize, path)
    ingest = store.begin_upload(size_hint=size, max_size=max(1, size))
    waiting: list[Deferred[None]] = []

    def pause() -> None:
        waiting.append(Deferred())

    def resume() -> None:
        while waiting:
            waiting.pop().callback(None)

    ingest.set_flow_control(pause, resume)
    fh = await thread(open, path, "rb")
    try:
        while True:
            data = await thread(fh.read, 1 << 20)
            if not data:
                break
            ingest.write(data)
            if waiting:
                await waiting[-1]
    except BaseException:
        await ingest.abort()
        raise
    finally:
        fh.close()
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
