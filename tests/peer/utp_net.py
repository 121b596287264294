"""An in-memory network for the sans-IO uTP core: two (or more) demultiplexers, datagrams queued
between them with a fixed one-way delay, a fake clock, and hooks to lose, reorder, duplicate or
inspect packets. No reactor, no socket."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tgateway.peer.utp.core import Addr, ConnectionEvents, UtpConnection
from tgateway.peer.utp.mux import UtpMux
from tgateway.peer.utp.wire import Packet, decode_packet


@dataclass
class Stream:
    """Events of one connection, recorded (a ConnectionEvents)."""

    received: bytearray = field(default_factory=bytearray)
    connected_at: float | None = None
    closed_with: tuple[str, bool] | None = None
    drained: int = 0
    on_data: Callable[[bytes], None] | None = None
    clock: Callable[[], float] = lambda: 0.0

    def connected(self) -> None:
        self.connected_at = self.clock()

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.on_data is not None:
            self.on_data(data)

    def send_drained(self) -> None:
        self.drained += 1

    def closed(self, reason: str, clean: bool) -> None:
        self.closed_with = (reason, clean)


class Node:
    """One endpoint: a mux, its address, the streams it accepted."""

    def __init__(self, net: Network, addr: Addr, *, accept: bool = True, **mux_kw: int) -> None:
        self.net = net
        self.addr = addr
        self.accept_streams = accept
        self.accepted: list[tuple[UtpConnection, Stream]] = []
        self.mux = UtpMux(self, rng=random.Random(hash(addr) & 0xFFFF), now=net.now, **mux_kw)
        self._flush = False

    # MuxOutput
    def send_datagram(self, data: bytes | bytearray, addr: Addr) -> None:
        self.net.send(bytes(data), self.addr, addr)

    def send_datagrams(self, data: list[bytearray], addr: Addr) -> None:
        for d in data:
            self.send_datagram(d, addr)

    def flush_needed(self) -> None:
        self._flush = True

    def accept(self, conn: UtpConnection) -> ConnectionEvents | None:
        if not self.accept_streams:
            return None
        s = Stream(clock=lambda: self.net.now)
        self.accepted.append((conn, s))
        return s

    def connect(self, other: Node) -> tuple[UtpConnection, Stream]:
        s = Stream(clock=lambda: self.net.now)
        conn = self.mux.connect(other.addr, s, self.net.now)
        return conn, s


class Network:
    """Datagrams in flight, delivered in time order; ``filter`` may drop or alter them."""

    def __init__(self, delay: float = 0.01, seed: int = 1) -> None:
        self.now = 1000.0
        self.delay = delay
        self.rng = random.Random(seed)
        self.nodes: dict[Addr, Node] = {}
        self.queue: list[tuple[float, int, bytes, Addr, Addr]] = []
        self._n = 0
        self.sent: list[tuple[Addr, Addr, Packet]] = []
        # filter(packet, src, dst) -> list of (extra delay) for each copy to deliver; [] drops
        self.filter: Callable[[Packet, Addr, Addr], list[float]] | None = None
        self.log = False

    def node(self, host: str, port: int = 6881, **kw: int) -> Node:
        n = Node(self, (host, port), **kw)
        self.nodes[(host, port)] = n
        return n

    def send(self, data: bytes, src: Addr, dst: Addr) -> None:
        p = decode_packet(data)
        self.sent.append((src, dst, p))
        copies = [0.0] if self.filter is None else self.filter(p, src, dst)
        for extra in copies:
            self._n += 1
            heapq.heappush(self.queue, (self.now + self.delay + extra, self._n, data, src, dst))

    def flush_all(self) -> None:
        for _ in range(100):
            pending = [n for n in self.nodes.values() if n._flush]
            if not pending:
                return
            for n in pending:
                n._flush = False
                n.mux.flush(self.now)

    def run(self, seconds: float, tick: float = 0.1,
            until: Callable[[], bool] | None = None) -> None:
        """Advance time by ``seconds``: deliver datagrams as they are due, tick every ``tick``."""
        end = self.now + seconds
        next_tick = self.now + tick
        self.flush_all()
        while self.now < end:
            if until is not None and until():
                return
            t_next = min(next_tick, end)
            if self.queue and self.queue[0][0] <= t_next:
                t, _, data, src, dst = heapq.heappop(self.queue)
                self.now = max(self.now, t)
                node = self.nodes.get(dst)
                if node is not None:
                    node.mux.datagram_received(data, src, self.now)
                # a batch: everything due at the same instant, then one flush
                while self.queue and self.queue[0][0] <= self.now:
                    _, _, data, src, dst = heapq.heappop(self.queue)
                    node = self.nodes.get(dst)
                    if node is not None:
                        node.mux.datagram_received(data, src, self.now)
                self.flush_all()
                continue
            self.now = t_next
            if self.now >= next_tick:
                next_tick = self.now + tick
                for n in list(self.nodes.values()):
                    n.mux.tick(self.now)
                self.flush_all()
