#!/usr/bin/env python3
"""Foundation benchmarks: upload ingest and download/webseed throughput, as same-run ratios.

    .venv/bin/python bench/storage/run.py [--size 1GiB] [--duration 10] [--only ingest|serve] [--repeat 3]

Ingest: a file of --size random bytes is uploaded over loopback with curl (multipart and raw
PUT), and with a light sendfile(2) client (raw PUT, ``sendfile_put.py``: curl's own copying
takes a good part of one of the 2 cores), to a fresh gateway (twistd, the real plugin) each
time; throughput is compared with the
rate at which one core computes SHA-256 and SHA-1 over the same bytes with hashlib (measured in
the same run), and the gateway's peak RSS (VmHWM) is reported. Target: >= 60 %, RSS < 150 MB.
The three uploads run in --repeat rounds (default 3; the order turns so that each mode goes
first once), each mode's median ratio printed last.
Before each upload the page cache's dirty pages are flushed (``sync``): the freshly written
source file stays dirty for 30 s (vm.dirty_expire_centisecs) and its writeback could otherwise
land inside a measured upload, on the same disk and cores.
The disk's own durable write rates (dd conv=fsync, with and without O_DIRECT) are printed too:
an upload is fsynced before it is acknowledged.

Serve: the same file stored chunked; wrk (shared/loadgen/webseed_range.lua) drives 2 MiB Range
reads and whole-file GETs against /api/download and /api/webseed, and against Debian nginx
serving the same bytes as a plain file, with 1 and 32 connections. Server pinned to core 0,
load generator to core 1. Target: >= 50 % of nginx.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.nginx import start_nginx  # noqa: E402
from harness.twistd import GatewayProcess, gateway_config, random_file  # noqa: E402

LOADGEN = REPO.parent / "shared" / "loadgen"
MiB = 1 << 20


def parse_size(text: str) -> int:
    from tgateway.config import parse_size as ps

    return ps(text)


def hash_reference(path: Path) -> float:
    """MiB/s of SHA-256 + SHA-1 over the file's bytes on one core (reads not timed)."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    spent = 0.0
    total = 0
    with open(path, "rb") as f:
        while block := f.read(2 * MiB):
            t = time.perf_counter()
            sha256.update(block)
            sha1.update(block)
            spent += time.perf_counter() - t
            total += len(block)
    return total / MiB / spent


def disk_reference(work: Path, size: int, direct: bool = False) -> float:
    """MiB/s at which this disk takes the same number of bytes durably (dd conv=fsync, through
    the page cache or with O_DIRECT as the gateway writes chunks)."""
    target = work / "dd-reference"
    t = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=2M", f"count={size // (2 * MiB)}",
                    "conv=fsync", "status=none", *(["oflag=direct"] if direct else [])], check=True)
    elapsed = time.perf_counter() - t
    target.unlink()
    return size / MiB / elapsed


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def twistd_pid(gw: GatewayProcess) -> int:
    assert gw.proc is not None
    return gw.proc.pid


def run_ingest(src: Path, work: Path, mode: str, data_root: Path | None = None) -> dict:
    data = (data_root or work) / f"ingest-{mode}"
    shutil.rmtree(data, ignore_errors=True)
    cfg = gateway_config(data / "data")
    gw = GatewayProcess(cfg, data, extra_args=())
    gw.start()
    pid = twistd_pid(gw)
    # Not pinned: the gateway hashes on worker threads (hashlib releases the GIL).
    if mode == "multipart":
        argv = ["curl", "-sS", "--fail", "-F", f"file=@{src}", gw.url("/api/upload")]
    elif mode == "raw-sendfile":
        port = gw.url("/").rsplit(":", 1)[1].split("/")[0]
        argv = [sys.executable, str(Path(__file__).with_name("sendfile_put.py")), "127.0.0.1", port, str(src)]
    else:
        argv = ["curl", "-sS", "--fail", "-T", str(src), "-H", "X-Filename: big.bin", gw.url("/api/upload")]
    try:
        t = time.perf_counter()
        out = subprocess.run(argv, check=True, capture_output=True)
        elapsed = time.perf_counter() - t
        meta = json.loads(out.stdout)
        hwm = vm_hwm_kib(pid)
    finally:
        gw.stop()
        shutil.rmtree(data, ignore_errors=True)
    size = src.stat().st_size
    return {"mode": mode, "seconds": elapsed, "MiBps": size / MiB / elapsed, "peak_rss_MiB": hwm / 1024,
            "storage": meta["storage"], "sha256": meta["sha256"]}


def wrk(url_base: str, path: str, size: int, conns: int, duration: int, full: bool) -> dict:
    """wrk with the shared webseed_range.lua: random 2 MiB piece-aligned Range reads."""
    script = LOADGEN / "webseed_range.lua"
    args = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "30s",
            "-s", str(script), url_base, "--", f"path={path}", f"size={size}", "chunk=2097152", "check=1"]
    if full:
        args.append("full=1")
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"^RESULT .*$", out.stdout, re.M)
    if not m:
        raise RuntimeError(out.stdout + out.stderr)
    fields = dict(kv.split("=", 1) for kv in m.group(0).split()[1:])
    return {"MBps": float(fields["MBps"]), "rps": float(fields["rps"]), "errors": int(fields["errors"]),
            "p99_us": float(fields.get("p99_us", 0))}


def parallel_curl(url: str, size: int, clients: int) -> dict:
    """``clients`` curl processes each download the whole file at once; aggregate MB/s."""
    argv = ["taskset", "-c", "1", "curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}\n", url]
    t = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(clients)]
    got = 0
    errors = 0
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode == 0 and int(out.strip() or 0) == size:
            got += size
        else:
            errors += 1
    elapsed = time.perf_counter() - t
    return {"MBps": got / 1e6 / elapsed, "errors": errors, "p99_us": 0.0}


def run_serve(src: Path, work: Path, duration: int) -> list[dict]:
    size = src.stat().st_size
    data = work / "serve"
    shutil.rmtree(data, ignore_errors=True)
    gw = GatewayProcess(gateway_config(data / "data", storage={"chunk_cache_size": "64MiB"}), data)
    gw.start()
    subprocess.run(["taskset", "-pc", "0", str(twistd_pid(gw))], check=True, capture_output=True)
    meta = json.loads(subprocess.run(["curl", "-sS", "--fail", "-T", str(src), "-H", "X-Filename: big.bin",
                                      gw.url("/api/upload")], check=True, capture_output=True).stdout)
    print(f"# stored as {meta['storage']}", flush=True)
    www = work / "www"
    www.mkdir(exist_ok=True)
    target = www / "big.bin"
    if not target.exists():
        os.link(src, target) if src.stat().st_dev == www.stat().st_dev else shutil.copy(src, target)
    nginx, nport = start_nginx(www, work)
    rows = []
    try:
        for full in (False, True):
            for conns in (1, 32):
                if full:
                    ref = parallel_curl(f"http://127.0.0.1:{nport}/big.bin", size, conns)
                else:
                    ref = wrk(f"http://127.0.0.1:{nport}", "/big.bin", size, conns, duration, False)
                for label, path in (("download", f"/api/download/{meta['sha256']}"),
                                    ("webseed", f"/api/webseed/{meta['info_hash']}/big.bin")):
                    if full:
                        ours = parallel_curl(gw.url(path), size, conns)
                    else:
                        ours = wrk(gw.base, path, size, conns, duration, False)
                    rows.append({"route": label, "kind": "whole file" if full else "2 MiB ranges",
                                 "conns": conns, "gateway_MBps": ours["MBps"], "nginx_MBps": ref["MBps"],
                                 "ratio": ours["MBps"] / ref["MBps"] if ref["MBps"] else 0.0,
                                 "errors": ours["errors"], "p99_ms": ours["p99_us"] / 1000})
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        nginx.terminate()
        nginx.wait(10)
        gw.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--only", choices=["ingest", "serve"])
    ap.add_argument("--repeat", type=int, default=3, help="ingest rounds (each mode once per round)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--tmpfs", action="store_true",
                    help="also ingest with the data folder on /dev/shm (fsync is free there): "
                         "shows what the code does when the disk is not the limit")
    args = ap.parse_args()
    size = parse_size(args.size)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tgw-bench-", dir=str(REPO / "bench" / "out")
                                                  if (REPO / "bench" / "out").exists() else None))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)  # nginx's worker (user nobody) must reach the file
    src = work / "big.bin"
    if not src.exists() or src.stat().st_size != size:
        random_file(src, size)
    os.sync()  # its dirty pages go to disk now, not during the first measurement
    print(f"# file: {size} bytes in {work}", flush=True)
    if args.only in (None, "ingest"):
        ref = hash_reference(src)
        print(f"# reference: hashlib SHA-256 + SHA-1 on one core: {ref:.0f} MiB/s", flush=True)
        disk = disk_reference(work, size)
        direct = disk_reference(work, size, direct=True)
        print(f"# reference: the disk takes {disk:.0f} MiB/s with fsync (dd conv=fsync), "
              f"{direct:.0f} MiB/s with O_DIRECT (oflag=direct)", flush=True)
        targets: list[tuple[str, Path | None]] = [("disk", None)]
        if args.tmpfs and Path("/dev/shm").is_dir():
            targets.append(("tmpfs", Path(tempfile.mkdtemp(prefix="tgw-", dir="/dev/shm"))))
        for where, root in targets:
            ratios: dict[str, list[float]] = {}
            modes = ["multipart", "raw", "raw-sendfile"]
            for round_ in range(args.repeat):
                for mode in modes[round_ % 3:] + modes[:round_ % 3]:  # each mode goes first once
                    os.sync()
                    r = run_ingest(src, work, mode, root)
                    r["data_on"] = where
                    r["ratio"] = r["MiBps"] / ref
                    r["reference_MiBps"] = ref
                    r["disk_MiBps"] = disk
                    r["disk_direct_MiBps"] = direct
                    ratios.setdefault(mode, []).append(r["ratio"])
                    print(json.dumps(r), flush=True)
            for mode, values in ratios.items():
                print(f"# {where} {mode}: median ratio {statistics.median(values):.2f} "
                      f"(runs: {', '.join(f'{v:.2f}' for v in values)})", flush=True)
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)
    if args.only in (None, "serve"):
        run_serve(src, work, args.duration)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
