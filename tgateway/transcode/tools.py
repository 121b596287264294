"""Finding FFmpeg: ``ffmpeg`` and ``ffprobe`` on ``PATH``, else the ``imageio-ffmpeg`` wheel.

The wheel ships one static ffmpeg (libx264, AAC, HLS muxer) and no ffprobe; probing then parses
what ``ffmpeg -i`` prints (see :mod:`tgateway.transcode.probe`). No FFmpeg at all: ``None``, and
the caller disables transcoding with one warning.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FFmpegTools", "find_ffmpeg"]


@dataclass(frozen=True)
class FFmpegTools:
    ffmpeg: str
    ffprobe: str | None  # None: probe with ``ffmpeg -i`` instead
    source: str  # "path" | "imageio-ffmpeg" | "config"


def _imageio_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # the package raises RuntimeError when its binary is missing
        return None
    return exe if exe and os.access(exe, os.X_OK) else None


def find_ffmpeg(
    which: Callable[[str], str | None] = shutil.which,
    fallback: Callable[[], str | None] = _imageio_ffmpeg,
) -> FFmpegTools | None:
    """``ffmpeg`` + ``ffprobe`` from PATH (both, or neither is used), else the wheel's ffmpeg."""
    ffmpeg, ffprobe = which("ffmpeg"), which("ffprobe")
    if ffmpeg and ffprobe:
        return FFmpegTools(ffmpeg, ffprobe, "path")
    exe = fallback()
    if exe:
        return FFmpegTools(exe, None, "imageio-ffmpeg")
    if ffmpeg:
        return FFmpegTools(ffmpeg, None, "path")
    return None
