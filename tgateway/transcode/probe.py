"""Probing videos: the argv, and pure parsers of ``ffprobe`` JSON and of ``ffmpeg -i`` output.

A file is a candidate when its MIME type says video or its first bytes look like a video
container (:func:`looks_like_video`); the probe decides: a video stream that is not a still
image, with a duration. Results (:class:`ProbeResult`) are stored with the file's metadata.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from tgateway.storage.naming import looks_like_video  # the store marks videos by it too

__all__ = [
    "ProbeError",
    "ProbeResult",
    "looks_like_video",
    "parse_ffmpeg_info",
    "parse_ffprobe_json",
    "probe_argv",
]

STILL_CODECS = frozenset({"png", "mjpeg", "gif", "bmp", "webp", "tiff", "jpeg2000", "jpegls"})


class ProbeError(ValueError):
    """The input is not a playable video (message says why)."""


@dataclass(frozen=True)
class ProbeResult:
    duration: float
    width: int  # coded size of the video stream
    height: int
    rotation: int  # degrees, 0/90/180/270 (display matrix)
    fps: float
    video_codec: str
    audio_codec: str | None
    bitrate: int  # bits/s of the whole file (0 if unknown)
    video_bitrate: int = 0
    pix_fmt: str = ""
    format: str = ""

    @property
    def display_width(self) -> int:
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        return self.width if self.rotation in (90, 270) else self.height

    @property
    def portrait(self) -> bool:
        return self.display_height > self.display_width

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["display_width"] = self.display_width
        out["display_height"] = self.display_height
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProbeResult:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)


def probe_argv(ffmpeg: str, ffprobe: str | None, source: str) -> list[str]:
    if ffprobe:
        return [ffprobe, "-v", "error", "-print_format", "json", "-show_format",
                "-show_streams", source]
    return [ffmpeg, "-hide_banner", "-nostdin", "-i", source]


def _num(value: Any, default: float = 0.0) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return default
    return f if f == f and f not in (float("inf"), float("-inf")) else default


def _rate(value: Any) -> float:
    try:
        r = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(r) if r > 0 else 0.0


def _norm_rotation(deg: float) -> int:
    return int(round(deg / 90.0)) * 90 % 360


def _check(result: ProbeResult) -> ProbeResult:
    if result.width <= 0 or result.height <= 0:
        raise ProbeError("the video stream has no size")
    if result.video_codec in STILL_CODECS:
        raise ProbeError(f"a still image ({result.video_codec}), not a video")
    if result.duration <= 0:
        raise ProbeError("the video has no duration")
    return result


def parse_ffprobe_json(text: str | bytes) -> ProbeResult:
    """``ffprobe -print_format json -show_format -show_streams`` output -> ProbeResult."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ProbeError("ffprobe printed no JSON") from None
    if not isinstance(data, dict):
        raise ProbeError("ffprobe printed no JSON object")
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    fmt = data.get("format") or {}
    videos = [s for s in streams if s.get("codec_type") == "video"
              and not (s.get("disposition") or {}).get("attached_pic")]
    if not videos:
        raise ProbeError("no video stream")
    v = videos[0]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    rotation = 0.0
    for sd in v.get("side_data_list") or []:
        if isinstance(sd, dict) and "rotation" in sd:
            rotation = -_num(sd.get("rotation"))
    if not rotation and (v.get("tags") or {}).get("rotate"):
        rotation = _num(v["tags"]["rotate"])
    duration = _num(fmt.get("duration")) or _num(v.get("duration"))
    fps = _rate(v.get("avg_frame_rate")) or _rate(v.get("r_frame_rate"))
    return _check(ProbeResult(
        duration=round(duration, 3),
        width=int(_num(v.get("width"))),
        height=int(_num(v.get("height"))),
        rotation=_norm_rotation(rotation),
        fps=round(fps, 3),
        video_codec=str(v.get("codec_name") or "unknown"),
        audio_codec=str(audios[0].get("codec_name")) if audios else None,
        bitrate=int(_num(fmt.get("bit_rate"))),
        video_bitrate=int(_num(v.get("bit_rate"))),
        pix_fmt=str(v.get("pix_fmt") or ""),
        format=str(fmt.get("format_name") or ""),
    ))


_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_BITRATE = re.compile(r"Duration: [^\n]*?bitrate: (\d+) kb/s")
_INPUT = re.compile(r"^Input #0, ([^,\n]+(?:,[^,\n ]+)*), from", re.M)
_STREAM = re.compile(r"^\s*Stream #0:\d+[^:]*: (Video|Audio): ([^\n]*)$", re.M)
_SIZE = re.compile(r"(?:^|[ ,])(\d{2,5})x(\d{2,5})(?=[ ,\[]|$)")
_FPS = re.compile(r"([\d.]+)(k?) fps")
_TBR = re.compile(r"([\d.]+)(k?) tbr")
_KBPS = re.compile(r"(\d+) kb/s")
_ROTATION = re.compile(r"display ?matrix: rotation of (-?[\d.]+) degrees", re.I)


def parse_ffmpeg_info(stderr: str | bytes) -> ProbeResult:
    """What ``ffmpeg -hide_banner -i FILE`` prints (no ffprobe: the imageio-ffmpeg wheel)."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    streams = _STREAM.findall(stderr)
    video = next((rest for kind, rest in streams if kind == "Video"
                  and "attached pic" not in rest), None)
    if video is None:
        raise ProbeError("no video stream")
    audio = next((rest for kind, rest in streams if kind == "Audio"), None)
    m = _DURATION.search(stderr)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0
    size = _SIZE.search(video)
    fps_m = _FPS.search(video) or _TBR.search(video)
    fps = float(fps_m.group(1)) * (1000 if fps_m.group(2) else 1) if fps_m else 0.0
    vkbps = _KBPS.search(video)
    br = _BITRATE.search(stderr)
    # rotation lines follow the video stream's line
    after = stderr[stderr.find(video):]
    nxt = re.search(r"^\s*Stream #", after[len(video):], re.M)
    block = after[: len(video) + (nxt.start() if nxt else len(after))]
    rot = _ROTATION.search(block)
    fmt = _INPUT.search(stderr)
    pix = re.search(r"\b(yuv\w+|nv12|rgb\w*|gray\w*)\b", video)
    return _check(ProbeResult(
        duration=round(duration, 3),
        width=int(size.group(1)) if size else 0,
        height=int(size.group(2)) if size else 0,
        rotation=_norm_rotation(-float(rot.group(1))) if rot else 0,
        fps=round(fps, 3),
        video_codec=video.split()[0].rstrip(","),
        audio_codec=audio.split()[0].rstrip(",") if audio else None,
        bitrate=int(br.group(1)) * 1000 if br else 0,
        video_bitrate=int(vkbps.group(1)) * 1000 if vkbps else 0,
        pix_fmt=pix.group(1) if pix else "",
        format=fmt.group(1) if fmt else "",
    ))
