"""An in-memory datagram network of DHT cores driven by one fake, event-driven clock.

Every node gets its own address 10.x.y.z:6881 (or a given one). ``send`` schedules delivery after
``latency`` seconds on the shared clock; query timers use the same clock. Datagrams to unknown
addresses vanish (a dead node), and ``drop`` lets a test lose packets.

The clock is a heap of events (twisted's ``task.Clock`` re-sorts its whole call list on every
``callLater``, which is too slow for thousands of datagrams in flight); ``run`` jumps from event
to event, so simulated idle hours cost nothing.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from typing import Any

from tgateway.dht.node import DhtNode


class _Call:
    __slots__ = ("when", "fn", "args", "cancelled", "called")

    def __init__(self, when: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False
        self.called = False

    def active(self) -> bool:
        return not (self.cancelled or self.called)

    def cancel(self) -> None:
        self.cancelled = True


class HeapClock:
    """callLater / seconds / advance, with a heap instead of a sorted list."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, _Call]] = []
        self._seq = itertools.count()

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, fn: Callable[..., Any], *args: Any) -> _Call:
        call = _Call(self.now + delay, fn, args)
        heapq.heappush(self._heap, (call.when, next(self._seq), call))
        return call

    def advance(self, seconds: float) -> None:
        self.run_to(self.now + seconds)

    def run_to(self, end: float, stop: Callable[[], bool] | None = None) -> bool:
        """Run events up to time ``end``; with ``stop``, return True as soon as it holds."""
        heap = self._heap
        while heap and heap[0][0] <= end:
            when, _, call = heapq.heappop(heap)
            if call.cancelled:
                continue
            self.now = max(self.now, when)
            call.called = True
            call.fn(*call.args)
            if stop is not None and stop():
                return True
        self.now = max(self.now, end)
        return stop is not None and stop()


Addr = tuple[str, int]


class SimOutput:
    def __init__(self, net: SimNetwork, addr: Addr) -> None:
        self.net = net
        self.addr = addr
        self.node: DhtNode | None = None
        self.timers: dict[bytes, object] = {}
        self.sent: list[tuple[bytes, Addr]] = []

    def send(self, data: bytes, addr: Addr) -> None:
        self.sent.append((data, addr))
        self.net.deliver(data, self.addr, addr)

    def set_timer(self, tid: bytes, delay: float) -> None:
        self.cancel_timer(tid)
        self.timers[tid] = self.net.clock.callLater(delay, self._fire, tid)

    def cancel_timer(self, tid: bytes) -> None:
        call = self.timers.pop(tid, None)
        if call is not None and call.active():  # type: ignore[attr-defined]
            call.cancel()  # type: ignore[attr-defined]

    def _fire(self, tid: bytes) -> None:
        self.timers.pop(tid, None)
        if self.node is not None:
            self.node.timeout(tid, self.net.clock.seconds())


class SimNetwork:
    def __init__(self, seed: int = 1, latency: float = 0.01) -> None:
        self.clock = HeapClock()
        self.rng = random.Random(seed)
        self.latency = latency
        self.nodes: dict[Addr, DhtNode] = {}
        self.outputs: dict[Addr, SimOutput] = {}
        self.drop: Callable[[bytes, Addr, Addr], bool] = lambda data, src, dst: False
        self.delivered = 0

    def add_node(
        self, addr: Addr | None = None, node_id: bytes | None = None, **kw: object
    ) -> DhtNode:
        if addr is None:
            n = len(self.nodes) + 1
            addr = (f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 6881)
        out = SimOutput(self, addr)
        kw.setdefault("restrict_ips", False)
        node = DhtNode(
            node_id or self.rng.randbytes(20),
            out,
            random.Random(self.rng.random()),
            self.clock.seconds(),
            **kw,  # type: ignore[arg-type]
        )
        out.node = node
        self.nodes[addr] = node
        self.outputs[addr] = out
        return node

    def addr_of(self, node: DhtNode) -> Addr:
        return next(a for a, n in self.nodes.items() if n is node)

    def deliver(self, data: bytes, src: Addr, dst: Addr) -> None:
        if self.drop(data, src, dst):
            return
        self.clock.callLater(self.latency, self._arrive, data, src, dst)

    def _arrive(self, data: bytes, src: Addr, dst: Addr) -> None:
        node = self.nodes.get(dst)
        if node is not None:
            self.delivered += 1
            node.datagram_received(data, src, self.clock.seconds())

    def run(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def run_until(self, cond: Callable[[], bool], limit: float = 60.0) -> bool:
        if cond():
            return True
        return self.clock.run_to(self.clock.seconds() + limit, cond)

    def tick_all(self) -> None:
        now = self.clock.seconds()
        for node in list(self.nodes.values()):
            node.tick(now)
