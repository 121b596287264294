"""uTP core benchmark: CPU time of the sans-IO uTP code (tgateway.peer.utp: mux, connections,
codec, LEDBAT) moving a bulk transfer between two demultiplexers over an in-memory link, without
sockets or a reactor. It measures the per-packet Python cost of the core alone, so it shows a
change to that code (a refactor, an optimisation) apart from the kernel and the adapter.

    .venv/bin/python bench/peer/utp_core.py [--size 60MB] [--loss-size 10MB] [--loss 0.03]
                                            [--rounds 7] [--tree DIR ...]

The link delivers every datagram after 5 ms (a "clean" run) or drops ``--loss`` of them at random
(a fixed seed: the same losses every run); timers tick every 100 ms of simulated time. Each
measurement runs in a child process with ``PYTHONPATH`` set to one ``--tree`` (default: this
checkout); with several trees (``git worktree add ../before <commit>``) the rounds alternate between
them, so load on a shared machine hits them alike. Prints one JSON line per measurement, then the
minimum and median CPU seconds per tree and scenario.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class _End:
    """One endpoint: a demultiplexer's output and the stream events of its one connection."""

    def __init__(self, link: _Link, addr: tuple[str, int]) -> None:
        from tgateway.peer.utp.mux import UtpMux

        self.link = link
        self.addr = addr
        self.wants_flush = False
        self.received = 0
        self.mux = UtpMux(self, rng=random.Random(addr[1]), now=link.now)

    # MuxOutput
    def send_datagram(self, data: bytes | bytearray, addr: tuple[str, int]) -> None:
        self.link.send(bytes(data), addr)

    def send_datagrams(self, data: list[bytearray], addr: tuple[str, int]) -> None:
        for d in data:
            self.link.send(bytes(d), addr)

    def flush_needed(self) -> None:
        self.wants_flush = True

    def accept(self, conn: Any) -> _End:
        return self

    # ConnectionEvents
    def connected(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def send_drained(self) -> None:
        pass

    def closed(self, reason: str, clean: bool) -> None:
        pass


class _Link:
    """Datagrams in flight, delivered in time order after ``delay``; ``loss`` of them dropped."""

    def __init__(self, delay: float, loss: float, seed: int = 1) -> None:
        self.now = 1000.0
        self.delay = delay
        self.loss = loss
        self.rng = random.Random(seed)
        self.queue: list[tuple[float, int, bytes, tuple[str, int]]] = []
        self.n = 0
        self.ends: dict[tuple[str, int], _End] = {}

    def send(self, data: bytes, dst: tuple[str, int]) -> None:
        if self.loss and self.rng.random() < self.loss:
            return
        self.n += 1
        heapq.heappush(self.queue, (self.now + self.delay, self.n, data, dst))

    def _deliver(self, data: bytes, dst: tuple[str, int]) -> None:
        src = next(a for a in self.ends if a != dst)
        self.ends[dst].mux.datagram_received(data, src, self.now)

    def flush(self) -> None:
        for _ in range(100):
            due = [e for e in self.ends.values() if e.wants_flush]
            if not due:
                return
            for e in due:
                e.wants_flush = False
                e.mux.flush(self.now)

    def run_until(self, done: Any, tick: float = 0.1, limit: float = 3600.0) -> None:
        end = self.now + limit
        next_tick = self.now + tick
        self.flush()
        while self.now < end and not done():
            if self.queue and self.queue[0][0] <= next_tick:
                t, _, data, dst = heapq.heappop(self.queue)
                self.now = max(self.now, t)
                self._deliver(data, dst)
                while self.queue and self.queue[0][0] <= self.now:  # one batch, then one flush
                    _, _, data, dst = heapq.heappop(self.queue)
                    self._deliver(data, dst)
                self.flush()
                continue
            self.now = next_tick
            next_tick = self.now + tick
            for e in self.ends.values():
                e.mux.tick(self.now)
            self.flush()


def transfer(size: int, loss: float) -> float:
    """CPU seconds to move ``size`` bytes one way (connection setup included)."""
    link = _Link(0.005, loss)
    a, b = _End(link, ("10.0.0.1", 1)), _End(link, ("10.0.0.2", 2))
    link.ends = {a.addr: a, b.addr: b}
    data = random.Random(7).randbytes(size)
    start = time.process_time()
    conn = a.mux.connect(b.addr, a, link.now)
    conn.write(data)
    link.run_until(lambda: b.received >= size)
    spent = time.process_time() - start
    if b.received != size:
        raise SystemExit(f"transfer incomplete: {b.received} of {size} bytes")
    return spent


def _size(text: str) -> int:
    sys.path.insert(0, str(ROOT))
    from tgateway.config import parse_size

    return parse_size(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="60MB")
    ap.add_argument("--loss-size", default="10MB")
    ap.add_argument("--loss", type=float, default=0.03)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--tree", action="append", default=[])
    ap.add_argument("--child", nargs=2, metavar=("BYTES", "LOSS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(f"{transfer(int(args.child[0]), float(args.child[1])):.6f}")
        return
    trees = [str(Path(t).resolve()) for t in args.tree] or [str(ROOT)]
    scenarios = {"clean": (_size(args.size), 0.0), "loss": (_size(args.loss_size), args.loss)}
    results: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for tree in trees:
            for name, (size, loss) in scenarios.items():
                env = dict(os.environ, PYTHONPATH=tree)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(size), str(loss)],
                    env=env, check=True, capture_output=True, text=True,
                ).stdout
                cpu = float(out.split()[-1])
                results.setdefault((tree, name), []).append(cpu)
                print(json.dumps({"round": r, "tree": tree, "scenario": name, "bytes": size,
                                  "loss": loss, "cpu_seconds": cpu}), flush=True)
    print("\n| tree | scenario | min CPU s | median CPU s |\n| --- | --- | ---: | ---: |")
    for (tree, name), cpus in results.items():
        print(f"| {tree} | {name} | {min(cpus):.3f} | {statistics.median(cpus):.3f} |")


if __name__ == "__main__":
    main()
