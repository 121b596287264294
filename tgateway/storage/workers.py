"""The threads an upload's ingest runs on (see :mod:`tgateway.storage.ingest`).

A :class:`SerialWorker` is one thread running queued jobs in order: each stage of an ingest (the
feeder, the SHA-256 chain, the lanes, the fsync worker) has its own, so the stages run in parallel
with each other and with the reactor while each keeps its own order. :class:`InlineWorker` runs
jobs at once in the calling thread (tests, ``threaded=False`` stores).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["InlineWorker", "SerialWorker", "Worker", "WorkerFactory", "call_inline"]


class Worker(Protocol):
    """Runs jobs in the order they were queued."""

    def submit(self, fn: Callable[[], Any]) -> Deferred[Any]:
        """Queue ``fn``; its result (or failure) comes back through the Deferred."""

    def post(self, fn: Callable[[], Any]) -> None:
        """Queue ``fn``; nothing comes back (a failure is logged)."""

    def stop(self) -> None:
        """No more jobs: the thread ends once the queued ones ran."""


class SerialWorker:
    """Runs queued functions one after another on its own thread.

    ``submit`` reports the result to the reactor through a Deferred; ``post`` does not (the
    function reports what matters itself), which spares the reactor a wake-up per job.
    """

    log = Logger()

    def __init__(self, reactor: IReactorFromThreads, name: str) -> None:
        self._reactor = reactor
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Deferred[Any] | None] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, d = item
            try:
                result = fn()
            except BaseException:
                f = Failure()
                if d is None:
                    self._reactor.callFromThread(self.log.failure, "worker job failed", f)
                else:
                    self._reactor.callFromThread(d.errback, f)
            else:
                if d is not None:
                    self._reactor.callFromThread(d.callback, result)

    def submit(self, fn: Callable[[], Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._queue.put((fn, d))
        return d

    def post(self, fn: Callable[[], Any]) -> None:
        """Queue ``fn`` (thread-safe: workers post to each other); no result comes back."""
        self._queue.put((fn, None))

    def stop(self) -> None:
        self._queue.put(None)


class InlineWorker:
    """Runs submitted functions at once, in the calling thread (tests)."""

    log = Logger()

    def submit(self, fn: Callable[[], Any]) -> Deferred[Any]:
        try:
            return succeed(fn())
        except BaseException:
            return fail()

    def post(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            self.log.failure("worker job failed")

    def stop(self) -> None:
        pass


WorkerFactory = Callable[[str], Worker]  # a worker for a thread name


def call_inline(fn: Callable[..., Any], *args: Any) -> None:
    fn(*args)
