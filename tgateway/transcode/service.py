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
  ``transcode:<sha256>`` (their bytes go when nobody else owns them): :meth:`JobRunner.cancel
  <tgateway.transcode.runner.JobRunner.cancel>`.

Queued jobs are run by the :class:`~tgateway.transcode.runner.JobRunner` (at most
``concurrent_jobs`` at once; each output stored as a derived file, never announced as a torrent),
and their results go to the video listener (NIP-71).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from tgateway.component import Component, Deps, Provided
from tgateway.config import TranscodingConfig
from tgateway.metrics import Collect
from tgateway.storage.api import ContentStore, Db
from tgateway.storage.model import StoredEvent, StoredFile
from tgateway.storage.transcode_jobs import Job, JobStore
from tgateway.transcode import tools as ffmpeg_tools

from .api import VideoListener, VideoResults
from .probe import ProbeError, ProbeResult, looks_like_video
from .probing import Prober
from .runner import ITranscoderReactor, JobRunner
from .tools import FFmpegTools

__all__ = ["Transcoder", "build"]

EXAMINE_PAGE = 50  # unexamined videos read per query at start


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
        self._prober = Prober(store, reactor, tools) if tools is not None else None
        self._tasks: set[Deferred[Any]] = set()
        self._examining: set[str] = set()  # sha256 of the videos being examined now
        self._stopping = False
        self.runner = JobRunner(config=config, store=store, jobs=self.jobs, reactor=reactor,
                                tools=tools, probe=self.probe, ready=self._video_ready,
                                track=self._track)

    @property
    def active(self) -> bool:
        """Transcoding is on and FFmpeg was found."""
        return self.config.enabled and self.tools is not None

    # life cycle --------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self.runner.start()
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
        running = self.runner.stop()
        if self._prober is not None:
            self._prober.cancel_all()
        pending = [*running, *self._tasks]
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
            if f.sha256 in self.runner.deleting or await self.store.get(f.sha256) is None:
                return  # deleted while it was probed (the probe failed for that reason)
            self.log.info("{sha256} is not a playable video: {why}", sha256=f.sha256, why=str(e))
            try:
                await self.store.set_meta(f.sha256, video_error=str(e))
            except KeyError:
                pass  # deleted meanwhile
            await self._video_found(f, None, False)
            return
        if f.sha256 in self.runner.deleting or await self.store.get(f.sha256) is None:
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
        await self.runner.cancel(f.sha256)

    # the queue's face ----------------------------------------------------------------------

    def kick(self) -> None:
        """Start queued jobs while fewer than ``concurrent_jobs`` run."""
        if self.active and not self._stopping:
            self.runner.kick()

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
        return self.runner.live_progress(sha256)

    async def health(self) -> dict[str, Any]:
        """For ``GET /api/health``: the signals of its score (FFmpeg found, jobs by state, the
        oldest queued job's age, jobs failed and done since start)."""
        queued, oldest = await self.jobs.queue()
        return {"status": "ok" if self.active else "disabled",
                "ffmpeg": self.tools.source if self.tools else None,
                "running": self.runner.running,
                "queued": queued,
                "queue_age": round(self.reactor.seconds() - oldest, 3) if oldest is not None
                else 0.0,
                "jobs": await self.jobs.counts(),
                "finished": dict(self.runner.finished)}

    # the video listener ------------------------------------------------------------------

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
                     report=transcoder.health, metrics=[Collect(transcoder.runner.families)],
                     on_stored=transcoder.on_stored,
                     on_deleted=transcoder.on_deleted, provides=Provided(transcoding=transcoder))
