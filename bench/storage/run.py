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
load generator to core 1. Target: >= 50 % of nginx. ``--shipped`` runs the gateway with
``configs/config.yaml`` as shipped (rate limits, cache, mode; only the data folder, the ports and
the DHT bootstrap nodes are changed); ``--conns``, ``--routes``, ``--kinds`` and ``--pairs``
pick the rows, e.g. the webseed's target with the shipped config (>= 0.8 of nginx):

    .venv/bin/python bench/storage/run.py --only serve --shipped --conns 16 --routes webseed \\
        --kinds ranges --pairs 3
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.nginx import start_nginx  # noqa: E402
from harness.twistd import GatewayProcess, gateway_config, random_file  # noqa: E402

LOADGEN = Path(os.environ.get("LOADGEN", "/work/shared/loadgen"))
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


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU so far of every process in the process group ``pgid``."""
    pids = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def measured(pgid: int, run: Callable[..., dict], *args: Any) -> dict:
    """``run(*args)``'s figures plus the server's CPU seconds per GB sent (``cpu_s_per_GB``), which
    depends much less than MB/s on what else the shared machine is doing."""
    cpu0, t0 = group_cpu_seconds(pgid), time.perf_counter()
    r = run(*args)
    gb = r["MBps"] * (time.perf_counter() - t0) / 1000
    r["cpu_s_per_GB"] = (group_cpu_seconds(pgid) - cpu0) / gb if gb else 0.0
    return r


def shipped_config(data_dir: Path) -> dict:
    """``configs/config.yaml`` as shipped, changed only where a benchmark on a shared machine
    must: the data folder, free loopback ports, and no DHT bootstrap nodes (nothing leaves
    127.0.0.1). Rate limits, cache size, mode and every other setting stay as shipped."""
    import yaml

    from harness.ports import free_tcp_port, free_udp_port

    cfg = yaml.safe_load((REPO / "configs" / "config.yaml").read_text())
    cfg["data_dir"] = str(data_dir)
    cfg["storage"].update(metadata_db=str(data_dir / "metadata.db"), blob_storage=str(data_dir / "blobs"),
                          chunk_storage=str(data_dir / "chunks"))
    cfg["transcoding"]["work_dir"] = str(data_dir / "transcoded")
    loopback = "127.0.0.1"
    cfg["gateway"].update(port=free_tcp_port(), host=loopback)
    cfg["blossom_server"].update(port=free_tcp_port(), host=loopback)
    cfg["tracker"].update(udp_port=free_udp_port(), http_port=free_tcp_port(), host=loopback)
    cfg["peer"].update(port=free_tcp_port(), host=loopback)
    cfg["dht"].update(port=free_udp_port(), host=loopback, bootstrap_nodes=[])
    return cfg


def run_serve(src: Path, work: Path, duration: int, *, shipped: bool = False,
              conns_list: tuple[int, ...] = (1, 32), routes: tuple[str, ...] = ("download", "webseed"),
              kinds: tuple[str, ...] = ("ranges", "full"), pairs: int = 1) -> list[dict]:
    """Each (kind, connections) is measured ``pairs`` times, nginx then the gateway's routes, and
    every pair's ratio is printed; the median ratio per row closes the run."""
    size = src.stat().st_size
    data = work / "serve"
    shutil.rmtree(data, ignore_errors=True)
    cfg = (shipped_config(data / "data") if shipped
           else gateway_config(data / "data", storage={"chunk_cache_size": "64MiB"}))
    gw = GatewayProcess(cfg, data)
    gw.start()
    subprocess.run(["taskset", "-pc", "0", str(twistd_pid(gw))], check=True, capture_output=True)
    gw_pgid = os.getpgid(twistd_pid(gw))
    meta = json.loads(subprocess.run(["curl", "-sS", "--fail", "-T", str(src), "-H", "X-Filename: big.bin",
                                      gw.url("/api/upload")], check=True, capture_output=True).stdout)
    print(f"# stored as {meta['storage']}; gateway config: "
          + ("configs/config.yaml as shipped (data folder, ports, DHT bootstrap changed)" if shipped
             else "harness.twistd.gateway_config"), flush=True)
    www = work / "www"
    www.mkdir(exist_ok=True)
    target = www / "big.bin"
    if not target.exists():
        os.link(src, target) if src.stat().st_dev == www.stat().st_dev else shutil.copy(src, target)
    nginx, nport = start_nginx(www, work)
    paths = {"download": f"/api/download/{meta['sha256']}",
             "webseed": f"/api/webseed/{meta['info_hash']}/big.bin"}
    # The same bytes in the page cache for both: nginx's file was just written, the gateway's
    # chunks were written with O_DIRECT (not cached). One whole read of each before measuring.
    for url in (f"http://127.0.0.1:{nport}/big.bin", gw.url(paths["download"])):
        subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", url], check=True)
    rows = []
    try:
        for kind in kinds:
            full = kind == "full"
            for conns in conns_list:
                for pair in range(pairs):
                    if full:
                        ref = measured(nginx.pid, parallel_curl, f"http://127.0.0.1:{nport}/big.bin", size, conns)
                    else:
                        ref = measured(nginx.pid, wrk, f"http://127.0.0.1:{nport}", "/big.bin", size, conns,
                                       duration, False)
                    for label in routes:
                        if full:
                            ours = measured(gw_pgid, parallel_curl, gw.url(paths[label]), size, conns)
                        else:
                            ours = measured(gw_pgid, wrk, gw.base, paths[label], size, conns, duration, False)
                        rows.append({"route": label, "kind": "whole file" if full else "2 MiB ranges",
                                     "conns": conns, "pair": pair + 1, "gateway_MBps": ours["MBps"],
                                     "nginx_MBps": ref["MBps"],
                                     "ratio": ours["MBps"] / ref["MBps"] if ref["MBps"] else 0.0,
                                     "errors": ours["errors"], "p99_ms": ours["p99_us"] / 1000,
                                     "gateway_cpu_s_per_GB": ours["cpu_s_per_GB"],
                                     "nginx_cpu_s_per_GB": ref["cpu_s_per_GB"],
                                     "loadavg": os.getloadavg()[0]})
                        print(json.dumps(rows[-1]), flush=True)
    finally:
        nginx.terminate()
        nginx.wait(10)
        gw.stop()
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["route"], r["kind"], r["conns"]), []).append(r)
    for (route, kind, conns), rs in groups.items():
        print(f"# {route} {kind} x{conns} connections: median ratio "
              f"{statistics.median(r['ratio'] for r in rs):.2f} (pairs: "
              + ", ".join(f"{r['gateway_MBps']:.0f}/{r['nginx_MBps']:.0f} MB/s = {r['ratio']:.2f}" for r in rs)
              + f"), errors {sum(r['errors'] for r in rs)}; CPU per GB sent: gateway "
              f"{statistics.median(r['gateway_cpu_s_per_GB'] for r in rs):.2f} s, nginx "
              f"{statistics.median(r['nginx_cpu_s_per_GB'] for r in rs):.2f} s", flush=True)
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
    ap.add_argument("--shipped", action="store_true",
                    help="serve: the gateway runs configs/config.yaml as shipped (ports, data folder and "
                         "DHT bootstrap changed only), not the tests' config with generous limits")
    ap.add_argument("--conns", default="1,32", help="serve: connection counts, comma-separated")
    ap.add_argument("--routes", default="download,webseed", help="serve: download, webseed")
    ap.add_argument("--kinds", default="ranges,full", help="serve: ranges (2 MiB, wrk), full (parallel curl)")
    ap.add_argument("--pairs", type=int, default=1, help="serve: nginx/gateway pairs per row (median ratio)")
    args = ap.parse_args()
    print(f"# load average at start: {os.getloadavg()}", flush=True)
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
        run_serve(src, work, args.duration, shipped=args.shipped,
                  conns_list=tuple(int(c) for c in args.conns.split(",")),
                  routes=tuple(args.routes.split(",")), kinds=tuple(args.kinds.split(",")),
                  pairs=args.pairs)
    print(f"# load average at end: {os.getloadavg()}", flush=True)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
