"""Transcoding benchmark: one 60 s 1080p clip through the gateway's queue vs the same FFmpeg
commands run by hand, in the same run.

By hand: the job's encode argv (every rendition in one FFmpeg run) and its HLS argvs, on the
clip's file. Gateway: the clip uploaded to an in-process gateway (makeService, loopback), timed
from the job's start to its end (FFmpeg runs, storing every output in the content store, the
playlists). Overhead = gateway / by hand - 1.

    .venv/bin/python bench/transcode/run.py [--seconds 60] [--preset veryfast] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from twisted.internet import task  # noqa: E402
from twisted.internet.defer import ensureDeferred  # noqa: E402
from twisted.internet.threads import deferToThread  # noqa: E402

from harness.gateway import RunningGateway, small_config  # noqa: E402
from tgateway.config import DEFAULT_PROFILES  # noqa: E402
from tgateway.transcode.argv import Profile, encode_argv, hls_argv, plan_variants  # noqa: E402
from tgateway.transcode.probe import parse_ffprobe_json  # noqa: E402
from tgateway.transcode.tools import find_ffmpeg  # noqa: E402


def make_clip(path: str, seconds: int) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size=1920x1080:rate=30:duration={seconds}", "-f", "lavfi", "-i",
         f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
         "-b:v", "12M", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", "-shortest", path],
        check=True)


def by_hand(tools, clip: str, preset: str, segment: float) -> float:
    out = subprocess.run([tools.ffprobe, "-v", "error", "-print_format", "json", "-show_format",
                          "-show_streams", clip], check=True, capture_output=True).stdout
    probe = parse_ffprobe_json(out)
    profiles = [Profile(p.name, p.height, int(p.video_bitrate), int(p.audio_bitrate))
                for p in DEFAULT_PROFILES]
    variants = plan_variants(probe, profiles)
    work = tempfile.mkdtemp(prefix="bench-hand-")
    try:
        t0 = time.monotonic()
        argv = encode_argv(tools.ffmpeg, "file:" + clip, probe, variants, work, preset=preset,
                           segment=segment)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        for v in variants:
            d = os.path.join(work, "hls_" + v.name)
            os.makedirs(d)
            subprocess.run(hls_argv(tools.ffmpeg, os.path.join(work, v.filename), d,
                                    segment=segment), check=True)
        return time.monotonic() - t0, " ".join(argv)
    finally:
        shutil.rmtree(work, True)


async def through_gateway(reactor, clip: str, preset: str, segment: float) -> float:
    data = tempfile.mkdtemp(prefix="bench-gw-")
    config = small_config(data, storage={"blob_threshold": 16 << 20, "chunk_size": 2 << 20,
                                         "metadata_db": f"{data}/metadata.db",
                                         "blob_storage": f"{data}/blobs",
                                         "chunk_storage": f"{data}/chunks"},
                          transcoding={"enabled": True, "min_file_size": 0, "preset": preset,
                                       "concurrent_jobs": 1, "work_dir": f"{data}/work",
                                       "hls_segment_duration": segment},
                          rate_limiting={"upload": {"requests_per_second": 1000,
                                                    "burst_size": 1000, "max_file_size": "10GB"}})
    gw = RunningGateway(config, reactor)
    try:
        import treq

        with open(clip, "rb") as fh:
            r = await treq.put(gw.url("/api/upload"), data=fh, headers={"X-Filename": "bench.mp4"})
        sha = json.loads(await r.text())["sha256"]
        transcoder = gw.gateway.components.transcode
        while True:
            job = await transcoder.job(sha)
            if job is not None and job.state in ("done", "failed"):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert job.state == "done", (job.error, job.stderr_tail)
        return job.finished_at - job.started_at
    finally:
        await gw.stop()
        shutil.rmtree(data, True)


async def main(reactor, args) -> None:
    tools = find_ffmpeg()
    assert tools and tools.ffprobe
    folder = tempfile.mkdtemp(prefix="bench-transcode-")
    clip = os.path.join(folder, "clip1080.mp4")
    make_clip(clip, args.seconds)
    rows = []
    for i in range(args.repeat):
        hand, cmd = await deferToThread(by_hand, tools, clip, args.preset, args.segment)
        gw = await through_gateway(reactor, clip, args.preset, args.segment)
        rows.append((hand, gw))
        print(json.dumps({"round": i, "by_hand_s": round(hand, 2), "gateway_s": round(gw, 2),
                          "overhead_pct": round(100 * (gw / hand - 1), 2)}), flush=True)
    hand = sum(h for h, _ in rows) / len(rows)
    gw = sum(g for _, g in rows) / len(rows)
    print(json.dumps({"clip": f"{args.seconds}s 1920x1080 30fps H.264 12 Mb/s + AAC",
                      "preset": args.preset, "by_hand_s": round(hand, 2),
                      "gateway_s": round(gw, 2), "overhead_pct": round(100 * (gw / hand - 1), 2),
                      "command": cmd}), flush=True)
    shutil.rmtree(folder, True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--segment", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    task.react(lambda r: ensureDeferred(main(r, args)))
