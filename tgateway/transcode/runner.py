"""Running the transcoding queue (:class:`JobRunner`): the jobs the transcoder queued
(:class:`~tgateway.storage.transcode_jobs.JobStore`), at most ``concurrent_jobs`` at once, in
the order priority, shorter first, older first.

A job is one FFmpeg run that writes every rendition as MP4 (:mod:`tgateway.transcode.argv`), then
one stream-copy run per rendition for its HLS playlist and segments; every output (MP4s,
segments, playlists, the master playlist) is stored in the content store as a file of its own,
owned by ``transcode:<sha256>`` with ``source="transcode"``: a *derived* file
(``UploadContext.derived``), served over HTTP (stream routes, downloads, Blossom) and never
announced as a torrent (no tracker listing, peer or DHT announce, NIP-35 event): a torrent per
HLS segment would be noise, and no client fetches HLS over BitTorrent; the original upload is
the torrent. Once done, the renditions go to the video listener (NIP-71). Jobs found running at
start-up were interrupted (crash, kill) and run again from the start.

A deleted file's job is cancelled (:meth:`JobRunner.cancel`): its FFmpeg is stopped, the job
dropped, and the outputs lose their owner ``transcode:<sha256>`` (their bytes go when nobody
else owns them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client.core import Metric
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

from tgateway.config import TranscodingConfig
from tgateway.metrics import DURATION_BUCKETS, Histogram, counter, gauge, histogram
from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredFile, UploadContext
from tgateway.storage.transcode_jobs import Job, JobStore

from .api import VideoResults
from .argv import Profile, Variant, encode_argv, hls_argv, plan_variants
from .outputs import in_thread, store_file, store_renditions
from .probe import ProbeError, ProbeResult
from .process import (
    FFmpegCancelled,
    FFmpegFailed,
    FFmpegRun,
    IFFmpegReactor,
    Progress,
    run_ffmpeg,
)
from .tools import FFmpegTools

__all__ = ["ITranscoderReactor", "JobRunner", "OWNER_PREFIX"]

OWNER_PREFIX = "transcode:"
PROGRESS_SAVE_INTERVAL = 1.0


class ITranscoderReactor(IFFmpegReactor, IReactorThreads):
    """What the transcoder needs of the reactor: FFmpeg runs, and its thread pool for file
    work (a reactor without one runs that work inline: tests)."""


class _Stopped(Exception):
    """The job was cancelled (file deleted) or the service is stopping."""


class JobRunner:
    log = Logger()

    def __init__(
        self,
        *,
        config: TranscodingConfig,
        store: ContentStore,
        jobs: JobStore,
        reactor: ITranscoderReactor,
        tools: FFmpegTools | None,
        probe: Callable[[StoredFile], Awaitable[ProbeResult]],
        ready: Callable[[VideoResults], Awaitable[None]],
        track: Callable[[Deferred[Any]], Deferred[Any]],
    ) -> None:
        """``probe``: a job's file when its probe was not kept; ``ready``: a job's results go
        to the video listener; ``track``: background work the transcoder waits for at stop."""
        self.config = config
        self.store = store
        self.jobs = jobs
        self.reactor = reactor
        self.tools = tools
        self._probe = probe
        self._ready = ready
        self._track = track
        self.profiles = [Profile(p.name, p.height, int(p.video_bitrate), int(p.audio_bitrate))
                         for p in config.profiles]
        self.work_dir = os.path.abspath(config.work_dir)
        self._runs: dict[str, FFmpegRun] = {}  # sha256 -> the FFmpeg run of a running job
        self._running: dict[str, Deferred[None]] = {}  # sha256 -> the job's coroutine
        self.finished: dict[str, int] = {}  # jobs finished since start: done, failed
        self.durations: dict[str, Histogram] = {}  # their run times, by result
        self._progress: dict[str, float] = {}
        self._saved_at: dict[str, float] = {}
        # files being deleted: a job ending meanwhile writes nothing
        self.deleting: set[str] = set()
        self._outputs: dict[str, list[str]] = {}  # outputs stored so far by a running job
        self._kicking = False
        self._kick_again = False
        self.stopping = False

    @property
    def running(self) -> int:
        """How many jobs run now."""
        return len(self._running)

    def live_progress(self, sha256: str) -> float | None:
        return self._progress.get(sha256)

    def start(self) -> None:
        """Jobs may start (again, after a stop)."""
        self.stopping = False

    def stop(self) -> list[Deferred[None]]:
        """Start no more jobs and stop the FFmpeg runs; returns the running jobs, which end
        as interrupted (they run again at the next start)."""
        self.stopping = True
        for run in self._runs.values():
            run.cancel()
        return list(self._running.values())

    def families(self) -> Iterator[Metric]:
        yield counter("tgateway_transcode_jobs", "Transcode jobs finished since start, by result",
                      ("result",), {(r,): n for r, n in list(self.finished.items())})
        yield histogram("tgateway_transcode_duration_seconds", "Time a transcode job ran",
                        ("result",), {(r,): h for r, h in list(self.durations.items())})
        yield gauge("tgateway_transcode_running", "Transcode jobs running now", (),
                    {(): len(self._running)})

    # the queue ---------------------------------------------------------------------------

    def kick(self) -> None:
        """Start queued jobs while fewer than ``concurrent_jobs`` run."""
        if self.stopping:
            return
        if self._kicking:
            self._kick_again = True
            return
        self._track(Deferred.fromCoroutine(self._fill()))

    async def _fill(self) -> None:
        self._kicking = True
        try:
            while True:
                self._kick_again = False
                while len(self._running) < self.config.concurrent_jobs and not self.stopping:
                    job = await self.jobs.claim_next(self.reactor.seconds())
                    if job is None:
                        break
                    d = Deferred.fromCoroutine(self._run(job))
                    self._running[job.sha256] = d
                    d.addErrback(lambda f: self.log.failure("transcoding job failed", f))
                if not self._kick_again:
                    break
        finally:
            self._kicking = False

    async def cancel(self, sha256: str) -> None:
        """``sha256`` was deleted: drop its job, stop its FFmpeg, and give up the outputs."""
        self.deleting.add(sha256)  # before the await: a job ending meanwhile writes nothing
        job = await self.jobs.delete(sha256)
        if job is None:
            self.deleting.discard(sha256)
            return
        run = self._runs.get(sha256)
        if run is not None:
            run.cancel()
        running = self._running.get(sha256)
        if running is not None:
            await DeferredList([running], consumeErrors=True)
            # a job that failed as its chunks went (deleted under it) may have written its end
            job = await self.jobs.delete(sha256) or job
        outputs = set(job.results.get("outputs", [])) | set(self._outputs.pop(sha256, []))
        await self._drop_outputs(sha256, outputs)
        self.deleting.discard(sha256)
        self.log.info("transcoding of {sha256} cancelled: file deleted", sha256=sha256)

    async def _drop_outputs(self, sha256: str, outputs: set[str]) -> None:
        for out in outputs:
            try:
                await self.store.remove_owner(out, OWNER_PREFIX + sha256)
            except KeyError:
                pass

    # one job -----------------------------------------------------------------------------

    def _set_progress(self, sha256: str, percent: float) -> None:
        percent = round(max(self._progress.get(sha256, 0.0), min(100.0, percent)), 2)
        self._progress[sha256] = percent
        now = self.reactor.seconds()
        if now - self._saved_at.get(sha256, 0.0) >= PROGRESS_SAVE_INTERVAL:
            self._saved_at[sha256] = now
            d = Deferred.fromCoroutine(self.jobs.progress(sha256, percent))
            d.addErrback(lambda f: self.log.failure("saving progress failed", f))

    def _check(self, sha256: str) -> None:
        if self.stopping or sha256 in self.deleting:
            raise _Stopped()

    async def _ffmpeg(self, sha256: str, argv: list[str], duration: float,
                      span: tuple[float, float]) -> None:
        self._check(sha256)
        low, high = span

        def progress(p: Progress) -> None:
            self._set_progress(sha256, low + (high - low) * p.percent / 100.0)

        run = run_ffmpeg(self.reactor, argv, duration=duration, on_progress=progress)
        self._runs[sha256] = run
        try:
            await run.done
        except FFmpegCancelled:
            raise _Stopped() from None
        finally:
            self._runs.pop(sha256, None)

    def _finished(self, result: str, started: float) -> None:
        self.finished[result] = self.finished.get(result, 0) + 1
        h = self.durations.get(result)
        if h is None:
            h = self.durations[result] = Histogram(DURATION_BUCKETS)
        h.observe(self.reactor.seconds() - started)

    async def _run(self, job: Job) -> None:
        sha = job.sha256
        started = self.reactor.seconds()
        work = os.path.join(self.work_dir, sha)
        self._progress[sha] = 0.0
        self._outputs[sha] = []
        try:
            results = await self._transcode(job, work)
            self._check(sha)
            await self.jobs.finish(sha, results, self.reactor.seconds())
            self._finished("done", started)
            self.log.info("transcoded {sha256}: {names}", sha256=sha,
                          names=[v["name"] for v in results["variants"]])
        except _Stopped:
            if sha not in self.deleting:
                self.log.info("transcoding of {sha256} interrupted; it runs again at start",
                              sha256=sha)
        except (FFmpegFailed, ProbeError, OSError) as e:
            tail = e.stderr_tail if isinstance(e, FFmpegFailed) else None
            message = e.message if isinstance(e, FFmpegFailed) else f"{type(e).__name__}: {e}"
            self.log.warn("transcoding of {sha256} failed: {why}", sha256=sha, why=message)
            self._finished("failed", started)
            await self._fail(sha, message, tail)
        except Exception as e:
            self.log.failure("transcoding of {sha256} failed", sha256=sha)
            self._finished("failed", started)
            await self._fail(sha, f"internal error: {type(e).__name__}", None)
        finally:
            self._running.pop(sha, None)
            self._progress.pop(sha, None)
            self._saved_at.pop(sha, None)
            if sha not in self.deleting:
                self._outputs.pop(sha, None)
            await self._thread(shutil.rmtree, work, True)
            if not self.stopping:
                self.reactor.callLater(0, self.kick)

    async def _fail(self, sha: str, message: str, tail: str | None) -> None:
        if sha in self.deleting or self.stopping:
            return
        outputs = set(self._outputs.get(sha, []))
        await self._drop_outputs(sha, outputs)
        if sha in self.deleting:
            return
        await self.jobs.fail(sha, message, tail, self.reactor.seconds())
        try:
            await self.store.set_meta(sha, transcoding={"state": "failed", "error": message})
        except KeyError:
            pass

    def _thread(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return in_thread(self.reactor, fn, *args)

    async def _transcode(self, job: Job, work: str) -> dict[str, Any]:
        assert self.tools is not None
        sha = job.sha256
        f = await self.store.get(sha)
        if f is None:
            raise _Stopped()
        probe = ProbeResult.from_json(job.probe) if job.probe else await self._probe(f)
        variants = plan_variants(probe, self.profiles)
        await self._thread(shutil.rmtree, work, True)
        await self._thread(os.makedirs, work, 0o755, True)
        segment = float(self.config.hls_segment_duration)
        async with self.store.ffmpeg_input(f) as source:
            argv = encode_argv(self.tools.ffmpeg, source, probe, variants, work,
                               preset=self.config.preset, segment=segment)
            await self._ffmpeg(sha, argv, probe.duration, (0.0, 90.0))
        for i, v in enumerate(variants):
            hls_dir = os.path.join(work, "hls_" + v.name)
            await self._thread(os.makedirs, hls_dir, 0o755, True)
            step = 7.0 / len(variants)
            await self._ffmpeg(sha, hls_argv(self.tools.ffmpeg, os.path.join(work, v.filename),
                                             hls_dir, segment=segment),
                               probe.duration, (90.0 + i * step, 90.0 + (i + 1) * step))
        return await self._store_outputs(f, probe, variants, work)

    async def _store_outputs(self, f: StoredFile, probe: ProbeResult, variants: list[Variant],
                             work: str) -> dict[str, Any]:
        sha = f.sha256
        stored = await store_renditions(
            f, probe, variants, work, thread=self._thread, check=lambda: self._check(sha),
            put=lambda path, name, mime: self._put(sha, path, name, mime))
        results = {"variants": stored.variants, "master": stored.master.sha256,
                   "outputs": list(dict.fromkeys(self._outputs.get(sha, [])))}
        self._set_progress(sha, 100.0)
        await self.store.set_meta(sha, transcoding={
            "state": "done", "master": stored.master.sha256,
            "variants": [{k: v[k] for k in ("name", "width", "height", "sha256", "mode")}
                         for v in stored.variants],
        })
        self._check(sha)
        await self._ready(VideoResults(f, probe, stored.renditions, stored.master))
        return results

    async def _put(self, sha: str, path: str, name: str, mime: str) -> StoredFile:
        """Store one output file, derived, under the owner ``transcode:<sha>``."""
        ctx = UploadContext(owner=OWNER_PREFIX + sha, name=name, source="transcode",
                            announce_dht=False)
        f = await store_file(self.store, path, ctx, mime, self._thread)
        self._outputs.setdefault(sha, []).append(f.sha256)
        return f
