"""The pure FFmpeg command builder: which renditions to make, and the argv that makes them.

Renditions (:func:`plan_variants`): a profile's ``height`` is the short side of the output, so a
720p profile gives 1280x720 for a landscape source and 720x1280 for a portrait one (rotation is
applied first: FFmpeg auto-rotates while decoding, so sizes here are display sizes). Profiles
larger than the source are skipped, never upscaled; when every profile is larger, the smallest
one is kept at the source's own size. Each rendition is H.264 (libx264, yuv420p) + AAC in MP4
with ``+faststart``; a stream that already is H.264 (yuv420p) or AAC at or below the rendition's
size and bitrate is copied (``mode`` ``remux`` when both are), not re-encoded.

:func:`encode_argv` builds one FFmpeg run that decodes the source once and writes every
rendition (``split`` + ``scale``), with keyframes forced every ``segment`` seconds so that the HLS
step (:func:`hls_argv`, a stream copy per rendition) cuts equal segments.
:func:`master_playlist` writes the HLS master with ``BANDWIDTH``, ``RESOLUTION`` and ``CODECS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .probe import ProbeResult

__all__ = [
    "Profile",
    "Variant",
    "avc_codecs",
    "encode_argv",
    "hls_argv",
    "IMAGE_OUTPUTS",
    "image_argv",
    "master_playlist",
    "plan_variants",
]


@dataclass(frozen=True)
class Profile:
    name: str
    height: int  # short side
    video_bitrate: int  # bits/s
    audio_bitrate: int


@dataclass(frozen=True)
class Variant:
    name: str
    width: int
    height: int
    video_bitrate: int
    audio_bitrate: int
    copy_video: bool
    copy_audio: bool
    has_audio: bool

    @property
    def mode(self) -> str:
        if self.copy_video and (self.copy_audio or not self.has_audio):
            return "remux"
        return "transcode"

    @property
    def filename(self) -> str:
        return f"{self.name}.mp4"


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def _fit(width: int, height: int, short: int) -> tuple[int, int]:
    """Scale (width, height) so that the short side is ``short``, keeping the aspect ratio."""
    if width >= height:
        return _even(width * short / height), _even(short)
    return _even(short), _even(height * short / width)


def plan_variants(probe: ProbeResult, profiles: Sequence[Profile]) -> list[Variant]:
    """The renditions to make, largest first. Never upscales; at least one."""
    w, h = probe.display_width, probe.display_height
    short = min(w, h)
    ordered = sorted(profiles, key=lambda p: p.height, reverse=True)
    chosen = [p for p in ordered if p.height <= short]
    if not chosen and ordered:
        chosen = [ordered[-1]]
    out = []
    src_vbr = probe.video_bitrate or probe.bitrate
    for p in chosen:
        if p.height >= short:
            tw, th = (w // 2 * 2, h // 2 * 2)
        else:
            tw, th = _fit(w, h, p.height)
        same_size = (tw, th) == (w, h)
        copy_video = (
            probe.video_codec == "h264"
            and same_size
            and probe.pix_fmt in ("", "yuv420p", "yuvj420p")
            and 0 < src_vbr <= p.video_bitrate * 1.1
        )
        has_audio = probe.audio_codec is not None
        copy_audio = has_audio and probe.audio_codec == "aac" and copy_video
        out.append(Variant(p.name, tw, th, p.video_bitrate, p.audio_bitrate, copy_video,
                           copy_audio, has_audio))
    return out


def encode_argv(
    ffmpeg: str,
    source: str,
    probe: ProbeResult,
    variants: Sequence[Variant],
    out_dir: str,
    *,
    preset: str = "veryfast",
    segment: float = 4.0,
    progress: bool = True,
    threads: int = 0,
) -> list[str]:
    """One run writing every rendition to ``out_dir/<name>.mp4``."""
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-v", "error"]
    if progress:
        argv += ["-progress", "pipe:1", "-nostats"]
    argv += ["-i", source]
    encoded = [v for v in variants if not v.copy_video]
    if encoded:
        labels = [f"[v{i}]" for i in range(len(encoded))]
        if len(encoded) == 1:
            graph = f"[0:v:0]scale={encoded[0].width}:{encoded[0].height},setsar=1{labels[0]}"
        else:
            parts = [f"[0:v:0]split={len(encoded)}" + "".join(f"[s{i}]" for i in range(len(encoded)))]
            for i, v in enumerate(encoded):
                parts.append(f"[s{i}]scale={v.width}:{v.height},setsar=1{labels[i]}")
            graph = ";".join(parts)
        argv += ["-filter_complex", graph]
    gop = max(1, int(round((probe.fps or 25) * segment)))
    k = 0
    for v in variants:
        if v.copy_video:
            argv += ["-map", "0:v:0", "-c:v", "copy"]
        else:
            argv += [
                "-map", f"[v{k}]", "-c:v", "libx264", "-preset", preset,
                "-profile:v", "high", "-pix_fmt", "yuv420p",
                "-b:v", str(v.video_bitrate), "-maxrate", str(int(v.video_bitrate * 1.5)),
                "-bufsize", str(v.video_bitrate * 2),
                "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
                "-force_key_frames", f"expr:gte(t,n_forced*{segment:g})",
            ]
            if threads:
                argv += ["-threads", str(threads)]
            k += 1
        if v.has_audio:
            argv += ["-map", "0:a:0"]
            if v.copy_audio:
                argv += ["-c:a", "copy"]
            else:
                argv += ["-c:a", "aac", "-b:a", str(v.audio_bitrate), "-ac", "2"]
        argv += ["-sn", "-dn", "-map_metadata", "-1", "-movflags", "+faststart",
                 "-f", "mp4", f"{out_dir}/{v.filename}"]
    return argv


def hls_argv(ffmpeg: str, mp4: str, out_dir: str, *, segment: float = 4.0) -> list[str]:
    """A VOD playlist ``out_dir/index.m3u8`` with MPEG-TS segments ``out_dir/seg_00000.ts``..."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-y", "-v", "error", "-i", mp4,
        "-map", "0", "-c", "copy", "-bsf:v", "h264_mp4toannexb",
        "-f", "hls", "-hls_time", f"{segment:g}", "-hls_playlist_type", "vod",
        "-hls_segment_type", "mpegts", "-hls_flags", "independent_segments",
        "-hls_segment_filename", f"{out_dir}/seg_%05d.ts", f"{out_dir}/index.m3u8",
    ]


def avc_codecs(mp4_head: bytes, has_audio: bool) -> str:
    """The RFC 6381 CODECS value from an MP4's ``avcC`` box (profile, compatibility, level)."""
    i = mp4_head.find(b"avcC")
    video = "avc1.640028"  # High, level 4.0: a safe default
    if i >= 0 and len(mp4_head) >= i + 8:
        p, c, level = mp4_head[i + 5], mp4_head[i + 6], mp4_head[i + 7]
        video = f"avc1.{p:02x}{c:02x}{level:02x}"
    return f"{video},mp4a.40.2" if has_audio else video


@dataclass(frozen=True)
class PlaylistEntry:
    uri: str
    bandwidth: int  # peak bits/s
    average_bandwidth: int
    width: int
    height: int
    codecs: str
    frame_rate: float = 0.0


def master_playlist(entries: Sequence[PlaylistEntry]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for e in entries:
        attrs = [f"BANDWIDTH={e.bandwidth}", f"AVERAGE-BANDWIDTH={e.average_bandwidth}",
                 f"RESOLUTION={e.width}x{e.height}", f'CODECS="{e.codecs}"']
        if e.frame_rate:
            attrs.append(f"FRAME-RATE={e.frame_rate:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(e.uri)
    return "\n".join(lines) + "\n"


def parse_media_playlist(text: str) -> list[tuple[float, str]]:
    """(duration, uri) of each segment of a VOD media playlist."""
    out: list[tuple[float, str]] = []
    duration: float | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXTINF:"):
            try:
                duration = float(line[8:].split(",", 1)[0])
            except ValueError:
                duration = 0.0
        elif line and not line.startswith("#"):
            out.append((duration or 0.0, line))
            duration = None
    return out


def rewrite_media_playlist(text: str, names: dict[str, str]) -> str:
    """Replace segment URIs (keys of ``names``) by their new names."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            line = names.get(line, line)
        lines.append(line)
    return "\n".join(lines) + "\n"


#: still-image outputs of :func:`image_argv`: (FFmpeg encoder, muxer, MIME type, extension)
IMAGE_OUTPUTS = {
    "jpeg": ("mjpeg", "image2", "image/jpeg", ".jpg"),
    "png": ("png", "image2", "image/png", ".png"),
    "gif": ("gif", "gif", "image/gif", ".gif"),
}


def image_argv(ffmpeg: str, source: str, out: str, fmt: str) -> list[str]:
    """Re-encode an image as ``fmt`` (a key of :data:`IMAGE_OUTPUTS`) without its metadata.

    FFmpeg applies an EXIF orientation while decoding, so the pixels come out upright and the
    output needs no EXIF; ``-map_metadata -1`` and the bit-exact flags leave out every tag and
    encoder comment (location, camera, software). JPEG and PNG keep the first frame; a GIF keeps
    its frames (an animation stays one).
    """
    encoder, muxer, _, _ = IMAGE_OUTPUTS[fmt]
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-v", "error", "-i", source,
            "-map", "0:v:0", "-map_metadata", "-1", "-map_chapters", "-1",
            "-fflags", "+bitexact", "-flags:v", "+bitexact", "-c:v", encoder]
    if fmt == "jpeg":
        argv += ["-q:v", "3", "-pix_fmt", "yuvj420p", "-frames:v", "1"]
    elif fmt == "png":
        argv += ["-pred", "mixed", "-frames:v", "1"]
    return [*argv, "-f", muxer, out]
