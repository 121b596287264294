"""The transcoding component: probe every video upload, queue jobs, run FFmpeg, store the outputs.

:func:`build` (the component) subscribes the :class:`Transcoder` to the content store's "file
stored" and "file deleted" events and offers its :class:`~tgateway.transcode.api.Transcoding` face
to the gateway's stream routes and Blossom's ``/media``:

- stored: a file whose MIME type or first bytes look like video is probed (ffprobe, or
  ``ffmpeg -i`` with the imageio-ffmpeg wheel) whenever FFmpeg was found, transcoding on or
  off; the result goes to the file's metadata (``meta.video``). With ``transcoding.enabled``,
  ``auto_transcode`` and the file at least ``min_file_size`` bytes, a job is queued (SQLite,
  ``tgateway.storage.transcode_jobs``); otherwise the video is handed to the
  :class:`~tgateway.transcode.api.VideoListener` (NIP-71) at once with the original only.
  Either way the listener hears first that the video was examined (``video_found``: the probe,
  and whether a job was queued), which is when its NIP-35 announcement goes out.
  Without FFmpeg nothing is probed or queued: the listener hears of the upload without a probe.
- start: the uploaded videos a stop or crash left unexamined (stored, but no probe result or
  error in their metadata: ``ContentStore.unexamined_videos``, page by page) are examined as if
  just stored, so their NIP-35 announcement, job and NIP-71 event are not lost. A probe
  cancelled because the gateway stops records nothing: the file is examined at the next start.
  Without FFmpeg a video is never marked examined: each start reports it again (the announcer
  skips what it announced) and, once FFmpeg is installed, it is probed.
- deleted: the job is dropped, a running FFmpeg is stopped, and the outputs lose their owner
  ``transcode:<sha256>`` (their bytes go when nobody else owns them).

At most ``concurrent_jobs`` jobs run at once, in the order priority, shorter first, older first.
A job is one FFmpeg run that writes every rendition as MP4 (:mod:`tgateway.transcode.argv`), then
one stream-copy run per rendition for its HLS playlist and segments; every output (MP4s,
segments, playlists, the master playlist) is stored in the content store as a file of its own,
owned by ``transcode:<sha256>`` with ``source="transcode"``: a *derived* file
(``UploadContext.derived``), served over HTTP (stream routes, downloads, Blossom) and never
announced as a torrent (no tracker listing, peer or DHT announce, NIP-35 event): a torrent per
HLS segment would be noise, and no client fetches HLS over BitTorrent; the original upload is
the torrent. Once done, the renditions go to the video listener (NIP-71). Jobs found running at
start-up were interrupted (crash, kill) and run again from the start.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any, cast

from prometheus_client.core import Metric
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

from tgateway.component import Component, Deps, Provided
from tgateway.config import TranscodingConfig
from tgateway.metrics import DURATION_BUCKETS, Collect, Histogram, counter, gauge, histogram
from tgateway.storage.api import ContentStore, Db
from tgateway.storage.model import StoredEvent, StoredFile, UploadContext
from tgateway.storage.transcode_jobs import Job, JobStore
from tgateway.transcode import tools as ffmpeg_tools

from .api import Rendition, VideoListener, VideoResults
from .argv import (
    PlaylistEntry,
    Profile,
    Variant,
    avc_codecs,
    encode_argv,
    hls_argv,
    master_playlist,
    parse_media_playlist,
    plan_variants,
    rewrite_media_playlist,
)
from .outputs import in_thread, read_head, read_text, store_file, write_text
from .probe import (
    ProbeError,
    ProbeResult,
    looks_like_video,
)
from .probing import Prober
from .process import (
    FFmpegCancelled,
    FFmpegFailed,
    FFmpegRun,
    IFFmpegReactor,
    Progress,
    run_ffmpeg,
)
from .tools import FFmpegTools

__all__ = ["OWNER_PREFIX", "Transcoder", "build"]

OWNER_PREFIX = "transcode:"
PLAYLIST_MIME = "application/vnd.apple.mpegurl"
PROGRESS_SAVE_INTERVAL = 1.0
EXAMINE_PAGE = 50  # unexamined videos read per query at start


class ITranscoderReactor(IFFmpegReactor, IReactorThreads):
    """What the transcoder needs of the reactor: FFmpeg runs, and its thread pool for file
    work (a reactor without one runs that work inline: tests)."""


class _Stopped(Exception):
    """The job was cancelled (file deleted) or the service is stopping."""


class Transcoder(Service):
    log = Logger()
    name = "transcode"

    def __init__(
        self,
        *,
        config: TranscodingConfig,
        store: ContentStore,
        db: Db,
        reactor: ITranscoderReactor,
        tools: FFmpegTools | None,
        videos: VideoListener | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.jobs = JobStore(db)
        self.reactor = reactor
        self.tools = tools
        self.videos = videos
        self.profiles = [Profile(p.name, p.height, int(p.video_bitrate), int(p.audio_bitrate))
                         for p in config.profiles]
        self.work_dir = os.path.abspath(config.work_dir)
        self._prober = Prober(store, reactor, tools) if tools is not None else None
        self._runs: dict[str, FFmpegRun] = {}  # sha256 -> the FFmpeg run of a running job
        self._running: dict[str, Deferred[None]] = {}  # sha256 -> the job's coroutine
        self.finished: dict[str, int] = {}  # jobs finished since start: done, failed
        self.durations: dict[str, Histogram] = {}  # their run times, by result
        self._progress: dict[str, float] = {}
        self._saved_at: dict[str, float] = {}
        self._deleted: set[str] = set()
        self._outputs: dict[str, list[str]] = {}  # outputs stored so far by a running job
        self._tasks: set[Deferred[Any]] = set()
        self._examining: set[str] = set()  # sha256 of the videos being examined now
        self._kicking = False
        self._kick_again = False
        self._stopping = False

    @property
    def active(self) -> bool:
        """Transcoding is on and FFmpeg was found."""
        return self.config.enabled and self.tools is not None

    # life cycle --------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        if self.tools is None:
            if self.config.enabled:
                self.log.warn("no FFmpeg found (PATH or the imageio-ffmpeg package): video "
                              "transcoding and probing are disabled; uploads still work")
        else:
            self.log.info("FFmpeg {ffmpeg} ({source}), probing with {probe}; transcoding {state}",
                          ffmpeg=self.tools.ffmpeg, source=self.tools.source,
                          probe=self.tools.ffprobe or "ffmpeg -i",
                          state="on" if self.config.enabled else "off")
        if self.active:
            self._track(Deferred.fromCoroutine(self._resume()))
        if self._prober is not None or self.videos is not None:
            self._track(Deferred.fromCoroutine(self._examine_left()))

    async def _resume(self) -> None:
        n = await self.jobs.requeue_interrupted()
        if n:
            self.log.info("{n} interrupted transcoding jobs queued again", n=n)
        self.kick()

    async def _examine_left(self) -> None:
        """Examine the uploaded videos a stop or crash left unexamined, a page at a time."""
        after: tuple[float, str] | None = None
        found = 0
        while not self._stopping:
            page = await self.store.unexamined_videos(after=after, limit=EXAMINE_PAGE)
            if not page:
                break
            if not found:
                self.log.info("examining the stored videos not examined before the last stop")
            found += len(page)
            after = (page[-1].created_at, page[-1].sha256)
            await DeferredList([self._track(Deferred.fromCoroutine(self._examine(f, False)))
                                for f in page])
        if found:
            self.log.info("{n} stored videos examined at start", n=found)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self._stopping = True
        for run in self._runs.values():
            run.cancel()
        if self._prober is not None:
            self._prober.cancel_all()
        pending = list(self._running.values()) + list(self._tasks)
        return DeferredList(pending, consumeErrors=True)

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        self._tasks.add(d)

        def done(result: Any) -> Any:
            self._tasks.discard(d)
            return result

        d.addBoth(done)
        d.addErrback(lambda f: self.log.failure("transcoder task failed", f))
        return d

    # events ------------------------------------------------------------------------------

    def on_stored(self, event: StoredEvent) -> Deferred[Any] | None:
        if event.context.derived or self._stopping:
            return None
        return self._track(Deferred.fromCoroutine(self._on_stored(event)))

    async def _on_stored(self, event: StoredEvent) -> None:
        await self._examine(event.file, True)

    async def _examine(self, f: StoredFile, retry_error: bool) -> None:
        """Examine a stored file once at a time: probe it if it looks like video, record the
        probe (or its error), queue a job, tell the listener. ``retry_error``: probe again a
        file whose earlier probe failed (it was uploaded again)."""
        if f.sha256 in self._examining:
            return
        self._examining.add(f.sha256)
        try:
            current = await self.store.get(f.sha256)  # examined meanwhile (start and upload)?
            if current is None or "video" in current.meta or (
                    not retry_error and "video_error" in current.meta):
                return
            await self._examine_now(current)
        finally:
            self._examining.discard(f.sha256)

    async def _examine_now(self, f: StoredFile) -> None:
        if not f.mime.lower().startswith("video/"):
            head = await self.store.reader.read_block(f, 0) if f.size else b""
            if not looks_like_video(head[:4096], f.mime):
                return
        if self._prober is None:
            # no FFmpeg: nothing can be probed (nor announced over NIP-71: no size, no duration)
            await self._video_found(f, None, False)
            return
        try:
            probe = await self._prober.probe_soon(f)
        except ProbeError as e:
            if self._stopping:
                return  # cancelled: examined again at the next start
            if f.sha256 in self._deleted or await self.store.get(f.sha256) is None:
                return  # deleted while it was probed (the probe failed for that reason)
            self.log.info("{sha256} is not a playable video: {why}", sha256=f.sha256, why=str(e))
            try:
                await self.store.set_meta(f.sha256, video_error=str(e))
            except KeyError:
                pass  # deleted meanwhile
            await self._video_found(f, None, False)
            return
        if f.sha256 in self._deleted or await self.store.get(f.sha256) is None:
            return  # deleted while it was probed
        await self.store.set_meta(f.sha256, video=probe.to_json())
        self.log.info("probed {sha256}: {w}x{h} {codec}, {d} s", sha256=f.sha256,
                      w=probe.display_width, h=probe.display_height, codec=probe.video_codec,
                      d=probe.duration)
        queued = (self.active and self.config.auto_transcode
                  and f.size >= self.config.min_file_size)
        if queued:
            await self.enqueue(f.sha256, probe)  # before video_found: its HLS URL answers 202
        await self._video_found(f, probe, queued)
        if not queued:
            await self._video_ready(VideoResults(f, probe))

    async def probe(self, f: StoredFile) -> ProbeResult:
        """Probe a stored file (raises ProbeError)."""
        assert self._prober is not None
        return await self._prober.probe(f)

    async def enqueue(self, sha256: str, probe: ProbeResult, priority: int = 0) -> bool:
        added = await self.jobs.add(sha256, probe.duration, probe.to_json(), priority,
                                    self.reactor.seconds())
        if added:
            self.log.info("transcoding job queued for {sha256}", sha256=sha256)
            self.kick()
        return added

    def on_deleted(self, f: StoredFile) -> Deferred[Any]:
        return self._track(Deferred.fromCoroutine(self._on_deleted(f)))

    async def _on_deleted(self, f: StoredFile) -> None:
        self._deleted.add(f.sha256)  # before the await: a job ending meanwhile writes nothing
        job = await self.jobs.delete(f.sha256)
        if job is None:
            self._deleted.discard(f.sha256)
            return
        run = self._runs.get(f.sha256)
        if run is not None:
            run.cancel()
        running = self._running.get(f.sha256)
        if running is not None:
            await DeferredList([running], consumeErrors=True)
            # a job that failed as its chunks went (deleted under it) may have written its end
            job = await self.jobs.delete(f.sha256) or job
        outputs = set(job.results.get("outputs", [])) | set(self._outputs.pop(f.sha256, []))
        await self._drop_outputs(f.sha256, outputs)
        self._deleted.discard(f.sha256)
        self.log.info("transcoding of {sha256} cancelled: file deleted", sha256=f.sha256)

    async def _drop_outputs(self, sha256: str, outputs: set[str]) -> None:
        for out in outputs:
            try:
                await self.store.remove_owner(out, OWNER_PREFIX + sha256)
            except KeyError:
                pass

    # queue -------------------------------------------------------------------------------

    def kick(self) -> None:
        """Start queued jobs while fewer than ``concurrent_jobs`` run."""
        if not self.active or self._stopping:
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
                while len(self._running) < self.config.concurrent_jobs and not self._stopping:
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

    async def retry(self, sha256: str, priority: int | None = None) -> Job | None:
        """Queue a job again (admin), or for the first time for a probed video that was not
        queued (``auto_transcode`` off, under ``min_file_size``). None when the file is not a
        probed video; a running job is left as it is."""
        job = await self.jobs.get(sha256)
        if job is None:
            f = await self.store.get(sha256)
            if f is None or "video" not in f.meta:
                return None
            video = cast(dict[str, Any], f.meta["video"])  # a ProbeResult.to_json() dict
            await self.enqueue(sha256, ProbeResult.from_json(video), priority or 0)
            return await self.jobs.get(sha256)
        if job.state == "running":
            return job
        job = await self.jobs.retry(sha256, priority)
        self.kick()
        return job

    async def job(self, sha256: str) -> Job | None:
        return await self.jobs.get(sha256)

    def live_progress(self, sha256: str) -> float | None:
        return self._progress.get(sha256)

    async def health(self) -> dict[str, Any]:
        """For ``GET /api/health``: the signals of its score (FFmpeg found, jobs by state, the
        oldest queued job's age, jobs failed and done since start)."""
        queued, oldest = await self.jobs.queue()
        return {"status": "ok" if self.active else "disabled",
                "ffmpeg": self.tools.source if self.tools else None,
                "running": len(self._running),
                "queued": queued,
                "queue_age": round(self.reactor.seconds() - oldest, 3) if oldest is not None
                else 0.0,
                "jobs": await self.jobs.counts(),
                "finished": dict(self.finished)}

    def families(self) -> Iterator[Metric]:
        yield counter("tgateway_transcode_jobs", "Transcode jobs finished since start, by result",
                      ("result",), {(r,): n for r, n in list(self.finished.items())})
        yield histogram("tgateway_transcode_duration_seconds", "Time a transcode job ran",
                        ("result",), {(r,): h for r, h in list(self.durations.items())})
        yield gauge("tgateway_transcode_running", "Transcode jobs running now", (),
                    {(): len(self._running)})

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
        if self._stopping or sha256 in self._deleted:
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
            if sha not in self._deleted:
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
            if sha not in self._deleted:
                self._outputs.pop(sha, None)
            await self._thread(shutil.rmtree, work, True)
            if not self._stopping:
                self.reactor.callLater(0, self.kick)

    async def _fail(self, sha: str, message: str, tail: str | None) -> None:
        if sha in self._deleted or self._stopping:
            return
        outputs = set(self._outputs.get(sha, []))
        await self._drop_outputs(sha, outputs)
        if sha in self._deleted:
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
        probe = ProbeResult.from_json(job.probe) if job.probe else await self.probe(f)
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
        base = os.path.splitext(f.name)[0] or sha
        out_variants = []
        renditions = []
        entries = []
        for v in variants:
            self._check(sha)
            mp4 = await self._put(sha, os.path.join(work, v.filename), f"{base} {v.name}.mp4",
                                  "video/mp4")
            head = await self._thread(read_head, os.path.join(work, v.filename), 1 << 20)
            codecs = avc_codecs(head, v.has_audio)
            hls_dir = os.path.join(work, "hls_" + v.name)
            text = await self._thread(read_text, os.path.join(hls_dir, "index.m3u8"))
            segments = parse_media_playlist(text)
            names: dict[str, str] = {}
            seg_shas = []
            peak = 0
            for duration, uri in segments:
                self._check(sha)
                seg = await self._put(sha, os.path.join(hls_dir, uri), f"{base} {v.name} {uri}",
                                      "video/mp2t")
                names[uri] = f"{seg.sha256}.ts"
                seg_shas.append(seg.sha256)
                if duration > 0.5:
                    peak = max(peak, int(seg.size * 8 / duration))
            playlist_text = rewrite_media_playlist(text, names)
            playlist_path = os.path.join(hls_dir, "playlist.m3u8")
            await self._thread(write_text, playlist_path, playlist_text)
            playlist = await self._put(sha, playlist_path, f"{base} {v.name}.m3u8",
                                       PLAYLIST_MIME)
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
        await self._thread(write_text, master_path, master_playlist(entries))
        master = await self._put(sha, master_path, f"{base}.m3u8", PLAYLIST_MIME)
        results = {"variants": out_variants, "master": master.sha256,
                   "outputs": list(dict.fromkeys(self._outputs.get(sha, [])))}
        self._set_progress(sha, 100.0)
        await self.store.set_meta(sha, transcoding={
            "state": "done", "master": master.sha256,
            "variants": [{k: v[k] for k in ("name", "width", "height", "sha256", "mode")}
                         for v in out_variants],
        })
        self._check(sha)
        await self._video_ready(VideoResults(f, probe, tuple(renditions), master))
        return results

    async def _put(self, sha: str, path: str, name: str, mime: str) -> StoredFile:
        """Store one output file, derived, under the owner ``transcode:<sha>``."""
        ctx = UploadContext(owner=OWNER_PREFIX + sha, name=name, source="transcode",
                            announce_dht=False)
        f = await store_file(self.store, path, ctx, mime, self._thread)
        self._outputs.setdefault(sha, []).append(f.sha256)
        return f

    async def _video_found(self, f: StoredFile, probe: ProbeResult | None, queued: bool) -> None:
        """Tell the listener a video upload was examined (NIP-35 announcements wait for it)."""
        if self.videos is None:
            return
        try:
            await self.videos.video_found(f, probe, queued)
        except Exception:
            self.log.failure("announcement of the video {sha256} failed", sha256=f.sha256)

    async def _video_ready(self, video: VideoResults) -> None:
        """Hand a probed (and maybe transcoded) video to the listener (NIP-71)."""
        if self.videos is None:
            return
        try:
            await self.videos.video_ready(video)
        except Exception:
            self.log.failure("NIP-71 announcement of {sha256} failed",
                             sha256=video.original.sha256)


def build(section: TranscodingConfig, deps: Deps) -> Component[Transcoder]:
    if deps.store is None or deps.db is None:
        raise RuntimeError("transcoding needs the storage component")
    transcoder = Transcoder(config=section, store=deps.store, db=deps.db, reactor=deps.reactor,
                            tools=ffmpeg_tools.find_ffmpeg(), videos=deps.videos)
    return Component(name="transcode", part=transcoder, services=[transcoder],
                     report=transcoder.health, metrics=[Collect(transcoder.families)],
                     on_stored=transcoder.on_stored,
                     on_deleted=transcoder.on_deleted, provides=Provided(transcoding=transcoder))
