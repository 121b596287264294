"""DHT benchmark: queries/s (50% ping, 50% get_peers) answered by the gateway's DHT node and by a
bittorrent-dht 11 node, under the same load generator, in the same run.

    .venv/bin/python bench/dht/run.py [--seconds 15] [--warmup 2] [--with-limiter]

Builds ``/work/shared/loadgen/dht_load.c`` (or ``$DHT_LOAD_SRC``) with gcc into ``bench/out/``
(git-ignored), starts each server pinned to core 0 and the generator pinned to core 1
(``taskset``), all on 127.0.0.1, and prints each ``RESULT`` line, the ratio gateway /
bittorrent-dht (target >= 0.7) and the p99 latencies. The gateway node runs with its per-IP query
limit off, as bittorrent-dht has none and the generator sends everything from 127.0.0.1;
``--with-limiter`` adds a run with the limiter on (limit set out of reach) to show its cost.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "out"
SRC = Path(os.environ.get("DHT_LOAD_SRC", "/work/shared/loadgen/dht_load.c"))
SERVER_CORE, LOAD_CORE = "0", "1"


def build_load() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    exe = OUT / "dht_load"
    if not exe.exists() or exe.stat().st_mtime < SRC.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(SRC), "-lm"], check=True)
    return exe


def start(argv: list[str], cwd: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        port = int(json.loads(line)["port"])
    except (ValueError, KeyError):
        err = stop(proc)
        raise SystemExit(f"server did not start: {argv}: {line!r} {err}") from None
    return proc, port


def stop(proc: subprocess.Popen[str]) -> str:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return err or ""


def load(exe: Path, port: int, label: str, seconds: float, warmup: float) -> dict[str, str]:
    argv = [
        "taskset",
        "-c",
        LOAD_CORE,
        str(exe),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-t",
        str(seconds),
        "-w",
        str(warmup),
        "-c",
        "64",
        "-S",
        "8",
        "--ping",
        "50",
        "--label",
        label,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    print(out.rstrip())
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return dict(re.findall(r"(\w+)=(\S+)", line))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--with-limiter", action="store_true")
    args = ap.parse_args()
    for tool in ("gcc", "taskset", "node"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed")
    exe = build_load()
    python = sys.executable
    runs = [
        ("bittorrent-dht", ["node", str(ROOT / "bench/dht/bittorrent_dht_server.mjs")]),
        ("gateway", [python, str(ROOT / "bench/dht/gateway_dht_server.py")]),
    ]
    if args.with_limiter:
        runs.append(
            (
                "gateway+limiter",
                [python, str(ROOT / "bench/dht/gateway_dht_server.py"), "--rate-limit", "1e9"],
            )
        )
    results: dict[str, dict[str, str]] = {}
    for label, argv in runs:
        proc, port = start(argv, ROOT)
        try:
            time.sleep(0.5)
            results[label] = load(exe, port, label, args.seconds, args.warmup)
        finally:
            err = stop(proc)
        stats = [x for x in err.splitlines() if x.startswith("{")]
        if stats:
            print(f"  server: {stats[-1]}")
    ref = float(results["bittorrent-dht"]["rps"])
    print()
    for label, r in results.items():
        ratio = float(r["rps"]) / ref if ref else 0.0
        print(
            f"{label:16s} {float(r['rps']):9.0f} replies/s  p50 {r['p50_us']:>6s} us  "
            f"p99 {r['p99_us']:>6s} us  errors {r['errors']}  timeouts {r['timeouts']}  "
            f"ratio {ratio:.2f}"
        )
    gw = float(results["gateway"]["rps"]) / ref if ref else 0.0
    print(f"RATIO gateway/bittorrent-dht={gw:.2f} (target >= 0.70)")


if __name__ == "__main__":
    main()
