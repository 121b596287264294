"""Video routes on ``gateway.port``: progressive streams, HLS, transcoding status.

- ``GET /api/stream/<sha256>``: the best transcoded MP4 when the file's job is done, else the
  original (ranges, ETag, CORS through ``send_file``). ``?original=true`` forces the original,
  ``?transcoded=true`` does not fall back: ``202`` with ``Retry-After`` while the file's job is
  queued or running, else 404 ``not_transcoded``; ``?quality=720p`` picks a rendition (404
  ``quality_not_found`` when there is none of that name).
- ``GET /api/stream/<sha256>/playlist.m3u8``: the HLS master playlist; ``202`` with
  ``Retry-After`` (and the job's state and progress as JSON) while the file's job is queued or
  running, 404 ``not_transcoded`` when there is no job or it failed. Both URLs are in the
  file's NIP-35 event as soon as a job is queued: a client that follows them early is told when
  to come back instead of a bare 404. It names the variant
  playlists as ``<sha256>.m3u8`` and they name their segments ``<sha256>.ts``: relative URIs that
  resolve under ``/api/stream/<sha256>/`` here, and on a Blossom server (``/<sha256>.<ext>``).
- ``GET /api/stream/<sha256>/<output sha256>.m3u8|.ts``: a variant playlist or a segment of that
  video's job (other hashes: 404).
- ``GET /api/users/me/files/<sha256>/transcoding-status``: for an owner of the file: state,
  progress, per-profile results and the error of a failed job.

The admin's view of the queue and its retry route are in :mod:`tgateway.admin.jobs`.

``rate_limiting.stream``: ``requests_per_second``/``burst_size`` per file for the stream and master
playlist routes, ``max_concurrent`` progressive streams at once (segments are not limited: a
player fetches one every few seconds).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.errors import ApiError, BadRequest, Forbidden, NotFound, TooManyRequests
from tgateway.http.app import new_app
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.headers import answer_preflight
from tgateway.http.jsonio import json_body
from tgateway.http.openapi import Op, Param, Reply, Schema, hidden, route
from tgateway.http.send import send_file
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredFile
from tgateway.transcode.api import Transcoding

__all__ = ["StreamApi", "retry_after"]

MPEGURL = "application/vnd.apple.mpegurl"


_BYTES: Schema = {"type": "string", "format": "binary"}
_RANGE = Param("Range", "header", description="one byte range (bytes=a-b)")
_SENT = {200: Reply("the bytes", content={"*/*": _BYTES}),
         206: Reply("the byte range asked for", content={"*/*": _BYTES},
                    headers={"Content-Range": {"type": "string", "required": True}}),
         304: Reply("If-None-Match names the file's ETag")}
_PLAYLIST = {200: Reply("an HLS playlist", content={"application/vnd.apple.mpegurl":
                                                    {"type": "string"}}),
             206: Reply("a byte range of it", content={"application/vnd.apple.mpegurl":
                                                       {"type": "string"}}),
             304: Reply("If-None-Match names its ETag")}
#: the answer while the file's transcode is queued or running: come back after Retry-After
_PENDING = Reply("the transcode is queued or running", json={
    "type": "object", "required": ["sha256", "state", "progress", "retry_after"],
    "properties": {"sha256": {"type": "string"}, "state": {"enum": ["queued", "running"]},
                   "progress": {"type": "number"}, "retry_after": {"type": "integer"}}},
    headers={"Retry-After": {"type": "integer", "minimum": 0, "required": True}})
_HLS_ERRORS = {404: "no such file, or not transcoded (yet), or not one of its playlists",
               416: "the Range is outside the file"}
_FLAG: Schema = {"type": "string", "enum": ["true", "false", "1", "0"]}
_UNKNOWN = hidden("404 for paths under /api/stream and /api/admin/transcode that are no route")


def _flag(request: Any, name: str) -> bool:
    raw = request.args.get(name.encode(), [b""])[0].decode("latin-1").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise BadRequest(f"{name} must be true or false", code="invalid_field")


QUEUED_RETRY_AFTER = 10  # seconds: a queued job waits for others
MAX_RETRY_AFTER = 60


def retry_after(state: str, progress: float, started_at: float | None, now: float) -> int:
    """Seconds a client should wait before asking again for the output of a queued or running
    job: for a running job, the time left at the pace so far (1 to 60 s); 10 s when queued."""
    if state != "running" or started_at is None or progress <= 0:
        return QUEUED_RETRY_AFTER if state == "queued" else 5
    elapsed = max(0.0, now - started_at)
    left = elapsed * (100.0 - progress) / progress
    return max(1, min(MAX_RETRY_AFTER, int(left + 0.999)))


class StreamApi:
    app = new_app()
    log = Logger()

    def __init__(self, *, store: ContentStore, transcoder: Transcoding | None, auth: Authenticator,
                 clock: IReactorTime, requests_per_second: float = 10.0, burst_size: int = 20,
                 max_concurrent: int = 50) -> None:
        self.store = store
        self.transcoder = transcoder
        self.auth = auth
        self.clock = clock
        self.limiter: KeyedLimiter[str] = KeyedLimiter(requests_per_second, burst_size)
        self.max_concurrent = max_concurrent
        self.streaming = 0

    async def _file(self, sha: str) -> StoredFile:
        f = await self.store.get(sha)
        if f is None:
            raise NotFound(f"no file with sha256 {sha}", code="file_not_found")
        return f

    def _limit(self, sha: str) -> None:
        wait = self.limiter.take(sha, self.clock.seconds())
        if wait:
            raise TooManyRequests("too many stream requests for this file; retry later",
                                  retry_after=wait)

    async def _results(self, sha: str) -> dict[str, Any] | None:
        job = await self.transcoder.job(sha) if self.transcoder is not None else None
        if job is None or job.state != "done":
            return None
        return job.results  # type: ignore[no-any-return]

    async def _pending(self, request: Any, sha: str) -> bytes | None:
        """A 202 with Retry-After while the file's job is queued or running, else None."""
        job = await self.transcoder.job(sha) if self.transcoder is not None else None
        if job is None or job.state not in ("queued", "running"):
            return None
        progress = job.progress
        if job.state == "running":
            live = self.transcoder.live_progress(sha) if self.transcoder is not None else None
            progress = live if live is not None else job.progress
        wait = retry_after(job.state, progress, job.started_at, self.clock.seconds())
        request.setHeader(b"retry-after", str(wait).encode())
        return json_body(request, {"sha256": sha, "state": job.state, "progress": progress,
                                   "retry_after": wait}, 202)

    # progressive -----------------------------------------------------------------------

    @route(app, "/api/stream/<sha256:sha>", methods=["GET", "HEAD"], op=Op(
        "Play a file: its best rendition, or the one asked for", tags=("video",), limited=True,
        params=[Param("quality", description="a rendition's name (360p...)"),
                Param("original", schema=_FLAG, description="the file as uploaded"),
                Param("transcoded", schema=_FLAG,
                      description="a rendition, 202 while the transcode runs, else 404"),
                _RANGE],
        replies={**{k: Reply(v.description, content=v.content, headers={
            **v.headers, **({"X-Stream-Source": {"type": "string",
                                                 "enum": ["original", "transcoded"]}}
                            if k != 304 else {})}) for k, v in _SENT.items()},
            202: _PENDING},
        errors={400: "original goes with neither transcoded nor quality",
                404: "no such file, or no such rendition", 416: "the Range is outside the file"}))
    async def stream(self, request: Any, sha: str) -> bytes | None:
        original = _flag(request, "original")
        transcoded = _flag(request, "transcoded")
        quality = request.args.get(b"quality", [b""])[0].decode("latin-1").strip()
        if original and (transcoded or quality):
            raise BadRequest("original=true goes with neither transcoded nor quality",
                             code="invalid_field")
        self._limit(sha)
        f = await self._file(sha)
        target = f
        if not original:
            results = await self._results(sha)
            variants = (results or {}).get("variants") or []
            chosen = None
            if quality:
                chosen = next((v for v in variants if v["name"] == quality), None)
                if chosen is None:
                    names = ", ".join(v["name"] for v in variants) or "none yet"
                    raise NotFound(f"no {quality} rendition of this file ({names})",
                                   code="quality_not_found")
            elif variants:
                chosen = max(variants, key=lambda v: v["width"] * v["height"])
            elif transcoded:
                pending = await self._pending(request, sha)
                if pending is not None:
                    return pending
                raise NotFound("this file has no transcoded rendition", code="not_transcoded")
            if chosen is not None:
                out = await self.store.get(chosen["sha256"])
                if out is None:
                    raise NotFound("the rendition is gone", code="file_not_found")
                target = out
        if self.streaming >= self.max_concurrent:
            raise TooManyRequests("too many streams at once; retry later", retry_after=1.0)
        self.streaming += 1
        try:
            extra = {b"x-stream-source": b"original" if target is f else b"transcoded"}
            await send_file(request, self.store.reader, target, disposition="inline",
                            extra_headers=extra)
        finally:
            self.streaming -= 1
        return None

    # HLS -------------------------------------------------------------------------------

    @route(app, "/api/stream/<sha256:sha>/playlist.m3u8", methods=["GET", "HEAD"], op=Op(
        "A video's HLS master playlist", tags=("video",), limited=True, params=[_RANGE],
        replies={**_PLAYLIST, 202: _PENDING}, errors=_HLS_ERRORS))
    async def master(self, request: Any, sha: str) -> bytes | None:
        self._limit(sha)
        await self._file(sha)
        results = await self._results(sha)
        if not results or not results.get("master"):
            pending = await self._pending(request, sha)
            if pending is not None:
                return pending
            raise NotFound("this file has no HLS playlist", code="not_transcoded")
        master = await self._file(results["master"])
        await send_file(request, self.store.reader, master, content_type=MPEGURL)
        return None

    @route(app, "/api/stream/<sha256:sha>/<sha256:part>.m3u8", methods=["GET", "HEAD"], op=Op(
        "One rendition's HLS playlist", tags=("video",), params=[_RANGE],
        replies=_PLAYLIST, errors=_HLS_ERRORS))
    async def hls_playlist(self, request: Any, sha: str, part: str) -> None:
        await self._hls_part(request, sha, part, "m3u8")

    @route(app, "/api/stream/<sha256:sha>/<sha256:part>.ts", methods=["GET", "HEAD"], op=Op(
        "An HLS segment", tags=("video",), params=[_RANGE],
        replies={k: Reply(v.description, content={"video/mp2t": _BYTES} if v.content else {},
                          headers=v.headers) for k, v in _SENT.items()},
        errors=_HLS_ERRORS))
    async def hls_segment(self, request: Any, sha: str, part: str) -> None:
        await self._hls_part(request, sha, part, "ts")

    @route(app, "/api/stream/<sha256:sha>/<name>", methods=["GET", "HEAD"], op=_UNKNOWN)
    def not_hls(self, request: Any, sha: str, name: str) -> None:
        raise NotFound("no such stream resource", code="not_found")

    async def _hls_part(self, request: Any, sha: str, part: str, ext: str) -> None:
        results = await self._results(sha)
        if results is None:
            raise NotFound("this file has no HLS playlist (yet)", code="not_transcoded")
        allowed = set()
        for v in results.get("variants", []):
            if ext == "m3u8":
                allowed.add(v.get("playlist"))
            else:
                allowed.update(v.get("segments", []))
        if part not in allowed:
            raise NotFound("not a part of this video's playlists", code="not_found")
        f = await self._file(part)
        await send_file(request, self.store.reader, f,
                        content_type=MPEGURL if ext == "m3u8" else "video/mp2t")

    # status and admin --------------------------------------------------------------------

    @authorized(app, "/api/users/me/files/<sha256:sha>/transcoding-status", methods=["GET"],
                need=Need.USER, op=Op(
                    "The transcoding of one of the caller's files", tags=("video",),
                    errors={403: "the caller does not own the file", 404: "no such file"},
                    replies={200: Reply("its state, progress and renditions", json={
                        "type": "object", "required": ["sha256", "state", "progress", "profiles"],
                        "properties": {
                            "sha256": {"type": "string"}, "state": {"type": "string"},
                            "progress": {"type": "number"},
                            "profiles": {"type": "array", "items": {"type": "object"}},
                            "hls": {"type": "string"}}})}))
    async def transcoding_status(self, request: Any, principal: Principal, sha: str) -> bytes:
        owners = await self.store.owners(sha)
        if not owners:
            raise NotFound(f"no file with sha256 {sha}", code="file_not_found")
        if not any(o.owner == principal.pubkey for o in owners):
            raise Forbidden("only an owner of this file can see its transcoding",
                            code="not_owner")
        f = await self._file(sha)
        return json_body(request, await self.describe(f))

    async def describe(self, f: StoredFile) -> dict[str, Any]:
        """The transcoding status of a stored file (also used by tests and the admin)."""
        sha = f.sha256
        job = await self.transcoder.job(sha) if self.transcoder is not None else None
        out: dict[str, Any] = {"sha256": sha, "video": f.meta.get("video")}
        if job is None:
            if "video" not in f.meta:
                out["state"] = "not_video" if "video_error" in f.meta or f.meta else "unknown"
                if "video_error" in f.meta:
                    out["error"] = f.meta["video_error"]
            else:
                out["state"] = "not_queued"
            out["progress"] = 0.0
            out["profiles"] = []
            return out
        live = self.transcoder.live_progress(sha) if job.state == "running" else None
        out.update({
            "state": job.state,
            "progress": live if live is not None else job.progress,
            "attempts": job.attempts,
            "priority": job.priority,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "error": job.error,
            "profiles": [],
        })
        if job.state == "done":
            base = f"/api/stream/{sha}"
            out["profiles"] = [
                {k: v.get(k) for k in ("name", "width", "height", "mode", "sha256", "size",
                                       "bitrate", "codecs")}
                | {"url": f"{base}?quality={v['name']}", "playlist": f"{base}/{v['playlist']}.m3u8"}
                for v in job.results.get("variants", [])
            ]
            out["hls"] = f"{base}/playlist.m3u8"
            out["master_sha256"] = job.results.get("master")
        return out

    @app.route("/api/stream/", branch=True, methods=["OPTIONS"])
    def preflight(self, request: Any, **kw: Any) -> bytes:
        return answer_preflight(request)

    @route(app, "/api/stream/", branch=True, methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
           op=_UNKNOWN)
    def not_found(self, request: Any) -> bytes:
        raise ApiError("no such API route", status=404, code="not_found")

