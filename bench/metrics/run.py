"""What the metrics cost: UDP announces and webseed reads, without and with them, in one run.

    .venv/bin/python bench/metrics/run.py --before REV [--secs 10] [--rounds 5]

"Before" is the tree at ``REV`` (a commit without the metrics, exported with ``git archive`` into
bench/out/before-REV), "after" this checkout. Both run at once, the servers pinned to core 0 and
the generators to core 1 (as bench/tracker/run.py and bench/storage/run.py do); each round
measures both, in alternating order (before-after, after-before, ...), so a change of the
machine's load hits both alike. Medians over the rounds, and the ratio after/before.

- UDP: ``bench/tracker/serve.py`` of each tree (the tracker alone), ``udp_announce_load -c 64
  -S 4 -P 1000``; also the server's CPU time per answered announce.
- Webseed: ``twistd tgateway`` of each tree (gateway-only, everything else off) serving a 64 MiB
  chunked file; wrk with webseed_range.lua, random 2 MiB piece reads on ``/api/webseed``, 16
  connections. "After" serves /metrics on ``metrics.port`` and is scraped every ``--scrape``
  seconds (1 by default; Prometheus' default is 60, 15 is common) during its runs.

The other load (CPU of everything but the benchmark, in cores) is printed per measurement; the
machine is shared, so read the ratios with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.tracker.run import (  # noqa: E402
    GEN_CPU,
    LOADGEN,
    OUT,
    PY,
    ROOT,
    SERVER_CPU,
    OtherLoad,
    Server,
    build,
    free_port,
    gen,
    loadavg,
)

TWISTD = str(Path(PY).parent / "twistd")
SIZE = 64 * 1024 * 1024


def export(rev: str) -> Path:
    """The tree at ``rev`` (with this checkout's compiled extension, so both hash alike)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    dest = OUT / f"before-{sha}"
    if not dest.exists():
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        for so in (ROOT / "tgateway" / "storage").glob("_sha256x2*.so"):
            (dest / "tgateway" / "storage" / so.name).write_bytes(so.read_bytes())
    return dest


def start_gateway(tree: Path, work: Path, metrics_port: int | None) -> tuple[Server, int]:
    port = free_port()
    config = {
        "mode": "gateway-only", "data_dir": str(work),
        "gateway": {"port": port, "host": "127.0.0.1"},
        "storage": {"metadata_db": f"{work}/m.db", "blob_storage": f"{work}/b",
                    "chunk_storage": f"{work}/c"},
        "tracker": {"enabled": False}, "peer": {"enabled": False}, "dht": {"enabled": False},
        "transcoding": {"enabled": False},
        "rate_limiting": {"upload": {"requests_per_second": 1000, "burst_size": 1000},
                          "download": {"requests_per_second": 100000, "burst_size": 100000}},
    }
    if metrics_port is not None:
        config["metrics"] = {"port": metrics_port, "host": "127.0.0.1"}
    (work / "config.yaml").write_text(json.dumps(config))
    server = Server(f"gateway-{tree.name}", [TWISTD, "-n", "--pidfile=", "--logfile",
                                             str(work / "twistd.log"), "tgateway", "-c",
                                             str(work / "config.yaml")],
                    port, env={"PYTHONPATH": str(tree)})
    return server, port


def upload(port: int, data: bytes) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/upload?name=big.bin", data=data,
                                 method="PUT")
    with urllib.request.urlopen(req, timeout=120) as r:
        return str(json.load(r)["info_hash"])


def wrk(port: int, path: str, secs: int, label: str, server: Server,
        servers: dict[str, Server]) -> dict[str, float]:
    other = OtherLoad(servers)
    cpu0 = server.cpu_seconds()
    args = ["taskset", "-c", GEN_CPU, "wrk", "-t1", "-c16", f"-d{secs}s", "--timeout", "30s",
            "-s", str(LOADGEN / "webseed_range.lua"), f"http://127.0.0.1:{port}", "--",
            f"path={path}", f"size={SIZE}", "chunk=2097152", "check=1", f"label={label}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=secs + 60)
    m = re.search(r"^RESULT .*$", out.stdout, re.M)
    if not m:
        raise RuntimeError(out.stdout + out.stderr)
    fields = dict(kv.split("=", 1) for kv in m.group(0).split()[1:])
    ok = max(int(fields["ok"]), 1)
    r = {"rps": float(fields["rps"]), "MBps": float(fields["MBps"]),
         "errors": float(fields["errors"]),
         "cpu_us": (server.cpu_seconds() - cpu0) / ok * 1e6, "other_load": other.cores()}
    print(f"  {label}: {m.group(0)} server_cpu_us_per_reply={r['cpu_us']:.1f} "
          f"other_load={r['other_load']:.2f}", flush=True)
    return r


class Scraper(threading.Thread):
    """GET /metrics every second, like a Prometheus."""

    def __init__(self, url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.every = every
        self.stop = threading.Event()
        self.count = 0

    def run(self) -> None:
        while not self.stop.wait(self.every):
            with urllib.request.urlopen(self.url, timeout=10) as r:
                r.read()
            self.count += 1


def micro() -> None:
    """What the added work costs by itself, timed in this process (best of 7): the UDP counter
    increment and the HTTP site's record of a finished request (route, status, latency, bytes)."""
    import timeit

    from tgateway.http.stats import HttpStats, route_of
    from tgateway.tracker.udp import UdpTracker

    class Req:
        route, code, path = "/api/webseed/<info_hash:ih>/<path:name>", 206, b"/api/webseed/x/y"

    udp = UdpTracker.__new__(UdpTracker)
    stats = HttpStats("gateway", served=[("/api/download", "download"), ("/api/webseed", "webseed")])
    req = Req()
    n = 1_000_000
    inc = min(timeit.repeat("udp.announces += 1", globals={"udp": udp}, number=n, repeat=7)) / n
    rec = min(timeit.repeat("stats.record(route_of(req), 'GET', 206, 0.004, 2097152)",
                            globals={"stats": stats, "route_of": route_of, "req": req},
                            number=n // 10, repeat=7)) / (n // 10)
    print(f"micro: UDP counter increment {inc * 1e9:.0f} ns per announce; HTTP record "
          f"{rec * 1e9:.0f} ns per request", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="a commit without the metrics")
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="udp,webseed")
    ap.add_argument("--scrape", type=float, default=1.0,
                    help="seconds between scrapes of the 'after' gateway's /metrics; 0: none")
    args = ap.parse_args()
    only = set(args.only.split(","))
    print(f"load average at start: {loadavg()}; server core {SERVER_CPU}, generator core {GEN_CPU}",
          flush=True)
    micro()
    build()
    before = export(args.before)
    trees = {"before": before, "after": ROOT}
    servers: dict[str, Server] = {}
    ports: dict[str, int] = {}
    metrics_port = free_port()
    work = Path(tempfile.mkdtemp(prefix="tg-bench-metrics-"))
    samples: dict[tuple[str, str, str], list[float]] = {}
    try:
        for name, tree in trees.items():
            env = {"PYTHONPATH": str(tree)}
            if "udp" in only:
                udp, http = free_port(), free_port()
                servers[f"udp-{name}"] = Server(
                    f"udp-{name}", [PY, str(tree / "bench/tracker/serve.py"), "--udp", str(udp),
                                    "--http", str(http)], http, env=env)
                ports[f"udp-{name}"] = udp
            if "webseed" in only:
                (work / name).mkdir()
                server, port = start_gateway(tree, work / name,
                                             metrics_port if name == "after" else None)
                servers[f"webseed-{name}"], ports[f"webseed-{name}"] = server, port
        paths = {}
        if "webseed" in only:
            data = os.urandom(SIZE)
            for name in trees:
                ih = upload(ports[f"webseed-{name}"], data)
                paths[name] = f"/api/webseed/{ih}/big.bin"
        for rnd in range(args.rounds):
            order = ["before", "after"] if rnd % 2 == 0 else ["after", "before"]
            print(f"--- round {rnd + 1}/{args.rounds} {order} (load average {loadavg()})",
                  flush=True)
            for name in order:
                if "udp" in only:
                    key = f"udp-{name}"
                    r = gen([str(OUT / "udp_announce_load"), "-h", "127.0.0.1", "-p",
                             str(ports[key]), "-t", str(args.secs), "-w", "2", "-c", "64", "-S",
                             "4", "-P", "1000", "--label", key], key, server=servers[key],
                            servers=servers)
                    for k in ("rps", "cpu_us", "other_load"):
                        samples.setdefault(("udp", name, k), []).append(float(r[k]))
            for name in order:
                if "webseed" in only:
                    key = f"webseed-{name}"
                    scraper = None
                    if name == "after" and args.scrape > 0:
                        scraper = Scraper(f"http://127.0.0.1:{metrics_port}/metrics", args.scrape)
                        scraper.start()
                    r2 = wrk(ports[key], paths[name], args.secs, key, servers[key], servers)
                    if scraper is not None:
                        scraper.stop.set()
                        scraper.join()
                        print(f"    scraped /metrics {scraper.count} times", flush=True)
                    for k, v in r2.items():
                        samples.setdefault(("webseed", name, k), []).append(v)
        print(f"\nload average at the end: {loadavg()}")
        print(f"\nmedians over {args.rounds} rounds of {args.secs} s (after = with metrics)")
        for bench in ("udp", "webseed"):
            if bench not in only:
                continue
            b = {k: statistics.median(v) for (x, n, k), v in samples.items()
                 if x == bench and n == "before"}
            a = {k: statistics.median(v) for (x, n, k), v in samples.items()
                 if x == bench and n == "after"}
            others = samples[(bench, "before", "other_load")] + samples[(bench, "after", "other_load")]
            print(f"{bench}: before {b['rps']:.0f} req/s ({b['cpu_us']:.1f} us CPU/reply), "
                  f"after {a['rps']:.0f} req/s ({a['cpu_us']:.1f} us CPU/reply): "
                  f"throughput x{a['rps'] / b['rps']:.3f}, CPU per reply x{a['cpu_us'] / b['cpu_us']:.3f}; "
                  f"other load {min(others):.2f}-{max(others):.2f} cores")
            pairs = list(zip(samples[(bench, "before", "rps")], samples[(bench, "after", "rps")],
                             strict=True))
            print(f"  per round after/before: {', '.join(f'{y / x:.3f}' for x, y in pairs)}")
    finally:
        for s in servers.values():
            s.stop()


if __name__ == "__main__":
    main()
