"""The transcoder's seams: what it offers other components, and what it hands over.

- :class:`Transcoding`: the face the gateway's stream routes (jobs, progress, an admin's retry)
  and Blossom's ``/media`` (the FFmpeg found) use;
- :class:`VideoResults` and :class:`VideoListener`: every new upload that looks like a video is
  reported once it is examined (``video_found``: probed or not, a job queued or not; NIP-35
  announcements of videos wait for it), and once a video is ready (probed, and transcoded when it
  is) the transcoder hands its results over (``video_ready``: NIP-71). The listener (in
  ``nostr/``) turns them into whatever it publishes; the transcoder builds no URL and no event.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from tgateway.storage.model import StoredFile
from tgateway.storage.transcode_jobs import Job

from .probe import ProbeResult
from .tools import FFmpegTools

__all__ = ["ProbeResult", "Rendition", "Transcoding", "VideoListener", "VideoResults"]


@dataclass(frozen=True)
class Rendition:
    """One transcoded MP4 of a video (stored as a derived file)."""

    name: str  # the profile's name: 720p ...
    file: StoredFile
    width: int
    height: int
    bitrate: int  # average bits per second


@dataclass(frozen=True)
class VideoResults:
    """A probed video: the original, its probe, and its renditions (none when it was not
    transcoded: transcoding off, or under ``min_file_size``)."""

    original: StoredFile
    probe: ProbeResult
    renditions: tuple[Rendition, ...] = ()
    master: StoredFile | None = None  # the HLS master playlist naming the renditions' playlists


class VideoListener(Protocol):
    def video_found(self, original: StoredFile, probe: ProbeResult | None,
                    queued: bool) -> Awaitable[object]:
        """A new upload that looks like a video (its MIME type or its first bytes) was examined:
        ``probe`` is None when it could not be probed (no FFmpeg, not a playable video);
        ``queued``: a transcoding job is queued for it (its HLS playlist will come). Called for
        every such upload, before ``video_ready`` (raising is logged)."""

    def video_ready(self, video: VideoResults) -> Awaitable[object]:
        """A video is ready to be announced (raising is logged, never fails the job)."""


class Transcoding(Protocol):
    @property
    def active(self) -> bool:
        """Transcoding is on and FFmpeg was found."""

    @property
    def tools(self) -> FFmpegTools | None:
        """The FFmpeg found at start (None: none)."""

    async def job(self, sha256: str) -> Job | None: ...

    def live_progress(self, sha256: str) -> float | None:
        """Percent done of a running job, fresher than the stored one."""

    async def retry(self, sha256: str, priority: int | None = None) -> Job | None:
        """Queue a job again (or for the first time for a probed video); None when the file is
        not a probed video."""
