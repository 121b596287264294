#!/usr/bin/env python3
"""Blossom GET throughput: a 1 GB blob over loopback, as a ratio to nginx in the same run.

    .venv/bin/python bench/blossom/run.py [--size 1GB] [--duration 15] [--layouts chunked,blob]

A file of --size random bytes is uploaded with ``curl -T`` to ``PUT /upload`` of a fresh
``twistd tgateway`` in blossom-only mode (the real plugin; auth off for the upload, the rate
limiter on but out of reach). Then wrk (``/work/shared/loadgen/webseed_range.lua``, ``full=1``:
plain GETs of the whole file, body not buffered) fetches ``GET /<sha256>`` with 1 and 16
connections, alternating with the same bytes from Debian nginx (one worker, ``sendfile on``) started on
loopback with a generated config in the work folder. Server (gateway or nginx) pinned to core 0,
wrk to core 1. ``--layouts``: ``chunked`` stores the file as 2 MiB chunks (the default for files
above ``storage.blob_threshold``), ``blob`` as one file (threshold raised above the size).
Each figure is the median of ``--repeat`` alternating pairs (the ratio is the median of the
pairs' ratios). Target: >= 50 % of nginx.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.nginx import start_nginx  # noqa: E402
from harness.ports import free_tcp_port, wait_for_tcp  # noqa: E402
from harness.twistd import random_file  # noqa: E402

LOADGEN = REPO.parent / "shared" / "loadgen"
TWISTD = str(Path(sys.executable).parent / "twistd")
MB = 1_000_000


def start_gateway(work: Path, size: int, layout: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_tcp_port()
    data = work / f"data-{layout}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    cfg = {
        "mode": "blossom-only",
        "data_dir": str(data),
        "blossom_server": {
            "port": port, "host": "127.0.0.1", "max_blob_size": size + 1,
            "require_auth": [], "rate_limit": {"requests_per_minute": 600000, "burst_size": 10000},
        },
        "storage": {
            "metadata_db": str(data / "metadata.db"),
            "blob_storage": str(data / "blobs"),
            "chunk_storage": str(data / "chunks"),
            "blob_threshold": size + 1 if layout == "blob" else 104857600,
        },
        "admin": {"default_user_storage_limit": 10 * size},
    }
    path = work / f"config-{layout}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = open(work / f"twistd-{layout}.log", "ab")
    proc = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "tgateway", "--config", str(path)],
        cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    log.close()
    wait_for_tcp("127.0.0.1", port, timeout=30)
    subprocess.run(["taskset", "-a", "-pc", "0", str(proc.pid)], check=True, capture_output=True)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wrk(base: str, path: str, size: int, conns: int, duration: int) -> dict[str, float]:
    args = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "600s",
            "-s", str(LOADGEN / "webseed_range.lua"), base, "--",
            f"path={path}", f"size={size}", "full=1"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 120)
    m = re.search(r"^RESULT .*$", out.stdout, re.M)
    if not m:
        raise RuntimeError(out.stdout + out.stderr)
    fields = dict(kv.split("=", 1) for kv in m.group(0).split()[1:])
    return {"MBps": float(fields["MBps"]), "rps": float(fields["rps"]),
            "errors": int(fields["errors"])}


def upload(port: int, src: Path) -> dict[str, object]:
    t = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "--fail", "-T", str(src), "-H",
                          "Content-Type: application/octet-stream",
                          f"http://127.0.0.1:{port}/upload"], check=True, capture_output=True)
    desc: dict[str, object] = json.loads(out.stdout)
    desc["upload_s"] = time.perf_counter() - t
    return desc


def main() -> None:
    from tgateway.config import parse_size

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--layouts", default="chunked,blob")
    ap.add_argument("--conns", default="1,16")
    ap.add_argument("--repeat", type=int, default=3, help="pairs per figure (medians reported)")
    ap.add_argument("--work", default="/tmp/tgw-bench-blossom")
    args = ap.parse_args()
    size = parse_size(args.size)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    www = work / "www"
    www.mkdir(exist_ok=True)
    src = www / "big.bin"
    if not src.exists() or src.stat().st_size != size:
        random_file(src, size)
    nginx, nport = start_nginx(www, work)
    rows = []
    try:
        for layout in args.layouts.split(","):
            gw, port = start_gateway(work, size, layout)
            try:
                desc = upload(port, src)
                print(json.dumps({"layout": layout, "upload_s": round(float(desc["upload_s"]), 2),  # type: ignore[arg-type]
                                  "upload_MBps": round(size / MB / float(desc["upload_s"]), 1)}),  # type: ignore[arg-type]
                      flush=True)
                path = f"/{desc['sha256']}"
                for conns in (int(c) for c in args.conns.split(",")):
                    refs, ourss, ratios = [], [], []
                    for _ in range(args.repeat):  # alternate, so load changes hit both
                        ref = wrk(f"http://127.0.0.1:{nport}", "/big.bin", size, conns,
                                  args.duration)
                        ours = wrk(f"http://127.0.0.1:{port}", path, size, conns, args.duration)
                        refs.append(ref)
                        ourss.append(ours)
                        ratios.append(ours["MBps"] / ref["MBps"] if ref["MBps"] else 0.0)
                        print(json.dumps({"layout": layout, "conns": conns,
                                          "blossom_MBps": ours["MBps"], "nginx_MBps": ref["MBps"],
                                          "errors": ours["errors"]}), flush=True)
                    row = {"layout": layout, "conns": conns,
                           "blossom_MBps": statistics.median(o["MBps"] for o in ourss),
                           "nginx_MBps": statistics.median(r["MBps"] for r in refs),
                           "ratio": round(statistics.median(ratios), 3),
                           "ratios": [round(x, 2) for x in ratios],
                           "errors": sum(o["errors"] for o in ourss),
                           "nginx_errors": sum(r["errors"] for r in refs)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                stop(gw)
    finally:
        os.killpg(nginx.pid, signal.SIGTERM)
        nginx.wait(10)
    print("\n| layout | connections | Blossom GET MB/s | nginx MB/s | ratio (median) | ratios |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['layout']} | {r['conns']} | {r['blossom_MBps']:,.0f} | {r['nginx_MBps']:,.0f} "
              f"| **{r['ratio']:.2f}** | {', '.join(f'{x:.2f}' for x in r['ratios'])} |")


if __name__ == "__main__":
    main()
