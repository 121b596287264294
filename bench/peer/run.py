"""Peer benchmark: leechers download the same file from the gateway's peer and from a libtorrent
seeder, in the same run, over loopback.

    .venv/bin/python bench/peer/run.py [--size 1GB] [--leechers 1,8] [--workdir DIR]

Steps: start ``twistd tgateway`` (gateway-only, tracker and DHT off, default storage and chunk
cache), upload a random file, fetch its ``.torrent`` without web seed; start a libtorrent seeder
(Debian python3, ``tests/peer/lt_client.py seed``) on the same torrent and the same bytes. Then for
each leecher count N: N libtorrent leechers (separate processes, no DHT/LSD/uTP/encryption, each
given only the seeder's address, plaintext: ``LT_ENCRYPTION=off``) download from the gateway, then N from libtorrent. Reported:
aggregate MB/s = N * size / (time from the first start to the last completion), and the ratio.
Prints one JSON line per measurement and a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from harness import ports, procs, tools  # noqa: E402
from harness.twistd import GatewayProcess, gateway_config, random_file  # noqa: E402

LT_CLIENT = ROOT / "tests" / "peer" / "lt_client.py"


def parse_size(text: str) -> int:
    from tgateway.config import parse_size as ps

    return ps(text)


def leech_round(torrent: Path, peer: str, n: int, work: Path, label: str) -> dict[str, object]:
    dirs = []
    procs = []
    start = time.monotonic()
    for i in range(n):
        d = work / f"{label}-{n}-{i}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        dirs.append(d)
        procs.append(subprocess.Popen(
            [tools.libtorrent_python(), str(LT_CLIENT), "leech", str(torrent), str(d), peer,
             "600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=tools.debian_python_env({"LT_ENCRYPTION": "off"}), start_new_session=True))
    reports = []
    ends = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        ends.append(time.monotonic())
        line = [x for x in out.splitlines() if x.startswith("{")]
        report = json.loads(line[-1]) if line else {"ok": False, "error": err[-500:]}
        reports.append(report)
    wall = max(ends) - start
    ok = all(r.get("ok") for r in reports)
    size = int(reports[0].get("bytes", 0)) if ok else 0
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    return {
        "seeder": label, "leechers": n, "ok": ok, "wall_s": round(wall, 2),
        "aggregate_MBps": round(n * size / wall / 1e6, 1) if ok else 0.0,
        "per_leecher_MBps": [round(float(r.get("rate", 0)) / 1e6, 1) for r in reports],
        "errors": [r.get("error") for r in reports if not r.get("ok")],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--leechers", default="1,8")
    ap.add_argument("--workdir", default=str(ROOT / "bench" / "out" / "peer"))
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    size = parse_size(args.size)
    counts = [int(x) for x in args.leechers.split(",")]
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    peer_port = ports.free_tcp_port()
    cfg = gateway_config(
        work / "data",
        peer={"port": peer_port, "host": "127.0.0.1", "max_connections_per_ip": 64},
        nostr={"auto_publish": False},
    )
    gw = GatewayProcess(cfg, work / "gw").start()
    seeder = None
    try:
        src = random_file(work / "source.bin", size)
        t0 = time.monotonic()
        with open(src, "rb") as body:
            req = urllib.request.Request(
                gw.url("/api/upload"), data=body, method="PUT",
                headers={"X-Filename": "source.bin", "Content-Length": str(size)})
            with urllib.request.urlopen(req, timeout=900) as r:
                info = json.load(r)
        print(json.dumps({"uploaded": info["sha256"], "seconds": round(time.monotonic() - t0, 1),
                          "storage": info["storage"], "piece_length": info["piece_length"]}),
              flush=True)
        with urllib.request.urlopen(gw.url(f"/api/torrent/{info['sha256']}?webseed=0")) as r:
            torrent_bytes = r.read()
        torrent = work / "file.torrent"
        torrent.write_bytes(torrent_bytes)
        seed_dir = work / "lt-seed"
        seed_dir.mkdir()
        os.replace(src, seed_dir / info["name"])
        lt_port = ports.free_tcp_port()
        seeder = procs.ClientProcess(
            [tools.libtorrent_python(), str(LT_CLIENT), "seed", str(torrent), str(seed_dir),
             str(lt_port)],
            env=tools.debian_python_env({"LT_ENCRYPTION": "off"}), name="libtorrent-seeder")
        seeder.wait_for_json(timeout=30, key="listening")
        results = []
        for _ in range(args.repeat):
            for n in counts:
                for label, peer in (("gateway", f"127.0.0.1:{peer_port}"),
                                    ("libtorrent", f"127.0.0.1:{lt_port}")):
                    res = leech_round(torrent, peer, n, work, label)
                    print(json.dumps(res), flush=True)
                    results.append(res)
        print()
        print("| leechers | gateway MB/s | libtorrent MB/s | gateway / libtorrent |")
        print("|---:|---:|---:|---:|")
        for n in counts:
            g = [r["aggregate_MBps"] for r in results if r["seeder"] == "gateway" and r["leechers"] == n]
            lt = [r["aggregate_MBps"] for r in results if r["seeder"] == "libtorrent" and r["leechers"] == n]
            gm, lm = max(g), max(lt)  # type: ignore[type-var]
            print(f"| {n} | {gm} | {lm} | {gm / lm:.0%} |" if lm else f"| {n} | {gm} | - | - |")
    finally:
        if seeder is not None:
            seeder.stop()
        gw.stop()
        shutil.rmtree(work / "data", ignore_errors=True)
        shutil.rmtree(work / "lt-seed", ignore_errors=True)


if __name__ == "__main__":
    hashlib.sha256()
    main()
