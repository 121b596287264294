"""Probing stored files with FFmpeg: ffprobe's JSON, or what ``ffmpeg -i`` prints (the
imageio-ffmpeg wheel has no ffprobe). FFmpeg reads the file through the store
(:meth:`~tgateway.storage.api.ContentStore.ffmpeg_input`); at most ``concurrent`` probes run at
once when they come from uploads (:meth:`Prober.probe_soon`)."""

from __future__ import annotations

from twisted.internet.defer import Deferred, DeferredSemaphore

from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredFile

from .probe import ProbeError, ProbeResult, parse_ffmpeg_info, parse_ffprobe_json, probe_argv
from .process import FFmpegCancelled, FFmpegFailed, FFmpegRun, IFFmpegReactor, run_ffmpeg
from .tools import FFmpegTools

__all__ = ["Prober"]


class Prober:
    def __init__(self, store: ContentStore, reactor: IFFmpegReactor, tools: FFmpegTools,
                 concurrent: int = 2) -> None:
        self.store = store
        self.reactor = reactor
        self.tools = tools
        self._slots = DeferredSemaphore(concurrent)
        self._runs: set[FFmpegRun] = set()
        self._cancels = 0  # how many times cancel_all was called

    def probe_soon(self, f: StoredFile) -> Deferred[ProbeResult]:
        """:meth:`probe`, once fewer than ``concurrent`` probes run (ProbeError if
        :meth:`cancel_all` is called meanwhile)."""
        cancels = self._cancels

        async def when_free() -> ProbeResult:
            if self._cancels != cancels:
                raise ProbeError("the gateway is stopping")
            return await self.probe(f)

        return self._slots.run(lambda: Deferred.fromCoroutine(when_free()))

    async def probe(self, f: StoredFile) -> ProbeResult:
        """Probe a stored file (raises ProbeError)."""
        async with self.store.ffmpeg_input(f) as source:
            argv = probe_argv(self.tools.ffmpeg, self.tools.ffprobe, source)
            run = run_ffmpeg(self.reactor, argv, keep_stdout=True, stderr_tail=256 * 1024)
            self._runs.add(run)

            def ended(result: object) -> object:
                self._runs.discard(run)
                return result

            run.protocol.ended.addBoth(ended)
            try:
                out = await run.done
            except FFmpegCancelled:
                raise ProbeError("the gateway is stopping") from None
            except FFmpegFailed as e:
                if self.tools.ffprobe:
                    raise ProbeError(e.message) from None
                return parse_ffmpeg_info(run.protocol.stderr_tail())
        if self.tools.ffprobe:
            return parse_ffprobe_json(out)
        return parse_ffmpeg_info(run.protocol.stderr_tail())

    def cancel_all(self) -> None:
        """Stop every running probe and every one waiting in :meth:`probe_soon` (the gateway
        is stopping): they raise ProbeError."""
        self._cancels += 1
        for run in list(self._runs):
            run.cancel()
