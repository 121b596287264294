"""Tracker benchmark: ours against bittorrent-tracker (node) and opentracker, same generators,
same machine, same run.

    .venv/bin/python bench/tracker/run.py [--secs 15] [--only udp,http,ws,memory]

* Builds the C load generators from /work/shared/loadgen (or $LOADGEN) into bench/out/ (git-ignored)
  and writes the info-hash pools there (1,000 hashes each: seed 1 for UDP and HTTP, which
  opentracker gets as whitelist; seed 2 for WebSocket, so that its swarms are not those the UDP
  generator fills to ``max_peers_per_torrent``).
* Starts each server pinned to core 0 (``taskset -c 0``) and runs the generator on core 1.
* UDP: ``udp_announce_load -c 64 -S 4 -P 1000``; HTTP: ``wrk -t1 -c64`` with ``http_announce.lua``
  (keep-alive; opentracker closes every connection); WebSocket: ``ws_announce_load.js -c 100
  --offers 5 --answer-pct 50``. Each run is ``--secs`` long after a 2 s warm-up.
* Ours runs as ``bench/tracker/serve.py``: the dedicated tracker port (tracker.http_port, the fast
  path) and the gateway-style twisted.web Site with ``tracker.resource`` (how /announce is served on
  the gateway port), plus the UDP port.
* Memory: ``bench/tracker/memory.py`` (100,000 peers across 10,000 torrents).
* The default announce URL: the first HTTP announce URL of a torrent made with
  ``configs/config.yaml`` as shipped (``tgateway.tracker.service.announce_urls``) is either the
  dedicated port (``tracker.http_port``) or ``/announce`` on the gateway port; the summary names
  which, and gives its ratios against the targets (>= 2x bittorrent-tracker, >= 0.5x opentracker).

Prints every RESULT line and a table of ratios measured in this run.

Quiet or not: the machine's load average is printed at the start and at the end. While a round
runs, the load average counts the benchmark itself (a busy server and a busy generator: about 2),
so each measurement also reports the *other load*: the CPU time the whole machine spent
(``/proc/stat``: user, nice, system, irq, softirq) minus what the three servers' process groups
and the generator spent, over the wall time, in cores, which is the unit of the load average. A
round in which it exceeds 0.5 (or that starts with a load average above 0.5 before the benchmark
has run anything) is marked ``NOISY``, and so are its ratios in the summary.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "out"
LOADGEN = Path(os.environ.get("LOADGEN", "/work/shared/loadgen"))
NODE_MODULES = ROOT / "tests" / "clients" / "node_modules"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
SERVER_CPU, GEN_CPU = "0", "1"
#: Other load (cores used by everything but the benchmark) above which a round is noisy.
NOISY = 0.5


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class OtherLoad:
    """CPU used by everything but the benchmark's servers and generators, in cores."""

    def __init__(self, servers: dict[str, Server]) -> None:
        self.servers = servers
        self.t = time.monotonic()
        self.busy = machine_busy()
        self.ours = self._ours()

    def _ours(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers.values()) + children_cpu()

    def cores(self) -> float:
        wall = time.monotonic() - self.t
        other = (machine_busy() - self.busy) - (self._ours() - self.ours)
        return max(other, 0.0) / max(wall, 1e-6)


def default_announce() -> tuple[str, str]:
    """(the first HTTP announce URL with the shipped config, our server that answers it here:
    ``tgateway`` for the dedicated port, ``tgateway-site`` for the gateway port's /announce)."""
    from urllib.parse import urlsplit

    sys.path.insert(0, str(ROOT))  # this checkout's tgateway, as the servers run it
    from tgateway.config import load_config
    from tgateway.tracker.service import announce_urls

    config = load_config(str(ROOT / "configs" / "config.yaml"))
    first = next(u for u in announce_urls(config) if u.startswith(("http://", "https://")))
    dedicated = bool(config.tracker.http_port) and urlsplit(first).port == config.tracker.http_port
    return first, "tgateway" if dedicated else "tgateway-site"


def free_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def wait_tcp(port: int, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


class Server:
    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})}, cwd=ROOT, start_new_session=True,
        )
        wait_tcp(port)
        time.sleep(0.5)

    def rss_kib(self) -> int:
        try:
            pids = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
            total = 0
            for pid in pids:
                with open(f"/proc/{pid}/status") as f:
                    total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]
            return total
        except OSError:
            return 0

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's process group so far."""
        total = 0
        pids = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def result(text: str) -> dict[str, str]:
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    raise RuntimeError("no RESULT line in:\n" + text[-2000:])


def gen(argv: list[str], label: str, env: dict[str, str] | None = None, timeout: float = 120,
        server: Server | None = None, servers: dict[str, Server] | None = None) -> dict[str, str]:
    """Run a generator on GEN_CPU. With ``server``, also measure the server's CPU time per good
    reply (warm-up included), which depends much less than throughput on what else the machine
    is doing. With ``servers``, also the other load during the run (see the module docstring)."""
    other = OtherLoad(servers) if servers else None
    cpu0 = server.cpu_seconds() if server else 0.0
    proc = subprocess.run(["taskset", "-c", GEN_CPU, *argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    r = result(proc.stdout)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    if server:
        ok = int(r.get("ok", "0"))
        r["cpu_us"] = f"{(server.cpu_seconds() - cpu0) / max(ok, 1) * 1e6:.1f}"
        line += f" server_cpu_us_per_reply={r['cpu_us']}"
    if other:
        r["other_load"] = f"{other.cores():.2f}"
        line += f" other_load={r['other_load']}" + (" NOISY" if float(r["other_load"]) > NOISY else "")
    print(f"  {label}: {line}", flush=True)
    return r


def build() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("udp_announce_load",):
        src = LOADGEN / f"{name}.c"
        binary = OUT / name
        if not binary.exists() or binary.stat().st_mtime < src.stat().st_mtime:
            subprocess.run(["gcc", "-O2", "-o", str(binary), str(src), "-lm"], check=True)
    # UDP and HTTP announce the hashes of pool.txt; WebSocket those of pool-ws.txt (other swarms:
    # the UDP generator's peers fill swarms to max_peers_per_torrent, and a full swarm takes no
    # WebSocket peer, so it would forward no offers).
    for name, seed in (("pool.txt", "1"), ("pool-ws.txt", "2")):
        with open(OUT / name, "w") as f:
            subprocess.run([str(OUT / "udp_announce_load"), "-P", "1000", "-s", seed, "--dump-pool"],
                           stdout=f, check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=15)
    ap.add_argument("--only", default="udp,http,ws,memory")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every measurement (servers interleaved) and report medians")
    args = ap.parse_args()
    only = set(args.only.split(","))
    secs = args.secs
    start_load = os.getloadavg()[0]
    default_url, default_name = default_announce()
    print(f"default announce URL (first HTTP URL of a torrent with configs/config.yaml): {default_url}"
          f" -> {default_name}", flush=True)
    print(f"load average at start: {loadavg()}"
          + (f"  -- above {NOISY}: the machine is not quiet" if start_load > NOISY else ""), flush=True)
    build()
    pool = str(OUT / "pool.txt")
    ws_pool = str(OUT / "pool-ws.txt")
    if "ws" in only and only & {"udp", "http"}:
        print("note: the WebSocket figures of this run share each server with the UDP and HTTP load "
              "(every peer announced there stays listed for its interval); measure them with --only ws",
              flush=True)
    node_env = {"NODE_PATH": str(NODE_MODULES)}
    samples: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}

    bt_port = free_port()
    ot_port = free_port()
    ours = {"udp": free_port(), "http": free_port(), "site": free_port()}
    servers = {
        "bittorrent-tracker": Server("bittorrent-tracker", ["node", str(ROOT / "bench/tracker/bt_server.mjs"), str(bt_port), str(NODE_MODULES)], bt_port),
        "opentracker": Server("opentracker", [shutil.which("opentracker") or "/usr/bin/opentracker", "-i", "127.0.0.1", "-p", str(ot_port), "-P", str(ot_port), "-w", pool], ot_port),
        # this checkout's tgateway, whatever the interpreter has installed
        "tgateway": Server("tgateway", [PY, str(ROOT / "bench/tracker/serve.py"), "--udp", str(ours["udp"]), "--http", str(ours["http"]), "--site", str(ours["site"])], ours["http"],
                           env={"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}),
    }
    noisy: list[bool] = []
    others: list[float] = []
    try:
        for rnd in range(args.rounds):
            print(f"--- round {rnd + 1}/{args.rounds} (load average {loadavg()})", flush=True)
            round_load = OtherLoad(servers)
            if "udp" in only:
                print("UDP announce (udp_announce_load -c 64 -S 4 -P 1000)", flush=True)
                for name, port in (("bittorrent-tracker", bt_port), ("opentracker", ot_port), ("tgateway", ours["udp"])):
                    r = gen([str(OUT / "udp_announce_load"), "-h", "127.0.0.1", "-p", str(port), "-t", str(secs), "-w", "2",
                             "-c", "64", "-S", "4", "-P", "1000", "--label", name], name, server=servers[name], servers=servers)
                    samples.setdefault(("udp", name), []).append(float(r["rps"]))
                    cpu.setdefault(("udp", name), []).append(float(r["cpu_us"]))
            if "http" in only:
                print("HTTP announce (wrk -t1 -c64, keep-alive; opentracker closes each connection)", flush=True)
                targets = (("bittorrent-tracker", f"http://127.0.0.1:{bt_port}"), ("opentracker", f"http://127.0.0.1:{ot_port}"),
                           ("tgateway", f"http://127.0.0.1:{ours['http']}"), ("tgateway-site", f"http://127.0.0.1:{ours['site']}"))
                for name, url in targets:
                    gen(["wrk", "-t1", "-c64", "-d2s", "-s", str(LOADGEN / "http_announce.lua"), url, "--", f"pool={pool}"], name + " warm-up")
                    r = gen(["wrk", "-t1", "-c64", f"-d{secs}s", "-s", str(LOADGEN / "http_announce.lua"), url, "--",
                             f"pool={pool}", f"label={name}"], name, server=servers[name.replace("-site", "")],
                            servers=servers)
                    samples.setdefault(("http", name), []).append(float(r["rps"]))
                    cpu.setdefault(("http", name), []).append(float(r["cpu_us"]))
            if "ws" in only:
                print("WebSocket announce with 5 offers (ws_announce_load -c 100 --offers 5 --answer-pct 50)", flush=True)
                targets = (("bittorrent-tracker", f"ws://127.0.0.1:{bt_port}"), ("tgateway", f"ws://127.0.0.1:{ours['http']}/announce"),
                           ("tgateway-site", f"ws://127.0.0.1:{ours['site']}/announce"))
                for name, url in targets:
                    r = gen(["node", str(LOADGEN / "ws_announce_load.js"), "--url", url, "-c", "100", "-d", str(secs), "-w", "2",
                             "--offers", "5", "--answer-pct", "50", "--pool", ws_pool, "--label", name], name, env=node_env,
                            server=servers[name.replace("-site", "")], servers=servers)
                    samples.setdefault(("ws", name), []).append(float(r["rps"]))
                    cpu.setdefault(("ws", name), []).append(float(r["cpu_us"]))
            other = round_load.cores()
            others.append(other)
            noisy.append(other > NOISY or (rnd == 0 and start_load > NOISY))
            print(f"--- round {rnd + 1}: other load {other:.2f} cores, load average {loadavg()}"
                  + ("  NOISY" if noisy[-1] else "  quiet"), flush=True)
        rss = {name: s.rss_kib() for name, s in servers.items()}
    finally:
        for s in servers.values():
            s.stop()
    if "memory" in only:
        print("Memory: 100,000 peers across 10,000 torrents (bench/tracker/memory.py)", flush=True)
        mem = subprocess.run([PY, str(ROOT / "bench/tracker/memory.py")], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        print("  " + mem.stdout.strip().replace("\n", "\n  "))
    print("\nServer RSS after the run (KiB): " + ", ".join(f"{k} {v}" for k, v in rss.items()))
    results = {k: statistics.median(v) for k, v in samples.items()}
    print("\nServer CPU per good reply (µs, warm-up included; median over rounds) and its ratio")
    for proto in ("udp", "http", "ws"):
        for name in ("bittorrent-tracker", "opentracker", "tgateway", "tgateway-site"):
            v = cpu.get((proto, name))
            if v:
                print(f"  {proto:4} {name:18} {statistics.median(v):8.1f} µs  runs " + " ".join(f"{x:.1f}" for x in v))
    for proto in ("udp", "http", "ws"):
        for name in ("tgateway", "tgateway-site"):
            mine = cpu.get((proto, name))
            for ref in ("bittorrent-tracker", "opentracker"):
                theirs = cpu.get((proto, ref))
                if mine and theirs:
                    print(f"  {proto:4} {name:14} costs x{statistics.median(mine) / statistics.median(theirs):.2f} "
                          f"the CPU per reply of {ref}")
    print("\nPer-round ratios (servers measured back to back; median over rounds)")
    for proto in ("udp", "http", "ws"):
        for name in ("tgateway", "tgateway-site"):
            ours_v = samples.get((proto, name))
            if not ours_v:
                continue
            for ref in ("bittorrent-tracker", "opentracker"):
                ref_v = samples.get((proto, ref))
                if ref_v:
                    ratios = [a / b for a, b in zip(ours_v, ref_v, strict=False)]
                    print(f"  {proto:4} {name:14} / {ref:18} median x{statistics.median(ratios):.2f}  rounds "
                          + " ".join(f"x{r:.2f}" + ("(NOISY)" if n else "") for r, n in zip(ratios, noisy, strict=False)))
    print(f"\nSummary (replies/s, median of {args.rounds} interleaved round(s); ratios from this run)")
    for (proto, name), v in sorted(samples.items()):
        print(f"  {proto:4} {name:18} median {statistics.median(v):9.0f}/s  runs " + " ".join(f"{x:.0f}" for x in v))
    for proto in ("udp", "http", "ws"):
        bt = results.get((proto, "bittorrent-tracker"))
        ot = results.get((proto, "opentracker"))
        for name in ("tgateway", "tgateway-site"):
            v = results.get((proto, name))
            if v is None or not bt:
                continue
            line = f"  {proto:4} {name:14} {v:9.0f}/s  x{v / bt:.2f} bittorrent-tracker ({bt:.0f}/s)"
            if ot:
                line += f"  x{v / ot:.2f} opentracker ({ot:.0f}/s)"
            print(line)
    for proto, name in (("http", default_name),):
        v, bt, ot = results.get((proto, name)), results.get((proto, "bittorrent-tracker")), results.get((proto, "opentracker"))
        if v and bt and ot:
            print(f"\nDefault announce URL ({default_url}, served here by {name}): x{v / bt:.2f} bittorrent-tracker "
                  f"(target 2), x{v / ot:.2f} opentracker (target 0.5): "
                  + ("met" if v / bt >= 2 and v / ot >= 0.5 else "NOT met"))
    print("\nOther load per round (cores used by everything but the benchmark): "
          + " ".join(f"{o:.2f}" + (" NOISY" if n else "") for o, n in zip(others, noisy, strict=True)))
    print(f"{sum(noisy)} of {len(noisy)} round(s) noisy (other load above {NOISY}"
          + (f", or a load average of {start_load:.2f} at the start" if start_load > NOISY else "") + ")")
    print(f"load average at end: {loadavg()}")


if __name__ == "__main__":
    main()
