"""The gateway announces its own peer for every stored torrent.

- To the built-in tracker directly (``tracker.add_local_peer``): the tracker then lists the
  gateway first for every gateway torrent, with no network round trip and no expiry.
- To the extra trackers of ``peer.trackers``: HTTP(S) announces with treq (BEP 3, ``compact=1``,
  ``numwant=0``) and UDP announces (BEP 15: connect, then announce). ``started`` when a torrent is
  added, a plain announce every ``interval`` seconds, ``stopped`` when a file is deleted and for
  every torrent when the service stops (bounded by a short timeout).

The UDP packets are the tracker's own BEP 15 codec (:mod:`tgateway.tracker.bep15`); the rest is a
thin Twisted layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_from_bytes, urlsplit

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tgateway import bencode
from tgateway.bencode import DecodeError
from tgateway.tracker.bep15 import (
    ACTION_ANNOUNCE,
    ACTION_CONNECT,
    ACTION_ERROR,
    decode_announce_interval,
    decode_connection_id,
    decode_reply,
    encode_announce_request,
    encode_connect_request,
)
from tgateway.tracker.core import LocalPeers

__all__ = ["TrackerAnnouncer", "UdpAnnounceClient", "http_announce_url"]

TIMEOUT = 15.0


def http_announce_url(url: str, info_hash: bytes, peer_id: bytes, port: int, size: int,
                      event: str) -> str:
    sep = "&" if "?" in url else "?"
    q = (
        f"info_hash={quote_from_bytes(info_hash, safe='')}&peer_id={quote_from_bytes(peer_id, safe='')}"
        f"&port={port}&uploaded=0&downloaded=0&left=0&compact=1&numwant=0"
    )
    if event:
        q += f"&event={event}"
    return url + sep + q


class UdpAnnounceClient(DatagramProtocol):
    """BEP 15 client: one socket, requests matched by transaction id, connection ids cached."""

    log = Logger()
    noisy = False

    def __init__(self, clock: IReactorTime, rand: Callable[[int], bytes] = os.urandom) -> None:
        self.clock = clock
        self.rand = rand
        self.pending: dict[int, tuple[defer.Deferred[tuple[int, bytes]], Any]] = {}
        self.conn_ids: dict[tuple[str, int], tuple[int, float]] = {}

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        try:
            action, tid, rest = decode_reply(data)
        except DecodeError:
            return
        entry = self.pending.pop(tid, None)
        if entry is None:
            return
        d, timer = entry
        if timer.active():
            timer.cancel()
        d.callback((action, rest))

    def _request(self, packet_for: Callable[[int], bytes],
                 addr: tuple[str, int]) -> defer.Deferred[tuple[int, bytes]]:
        tid = int.from_bytes(self.rand(4), "big")
        d: defer.Deferred[tuple[int, bytes]] = defer.Deferred()

        def timeout() -> None:
            entry = self.pending.pop(tid, None)
            if entry is not None:
                entry[0].errback(TimeoutError(f"no answer from udp tracker {addr[0]}:{addr[1]}"))

        self.pending[tid] = (d, self.clock.callLater(TIMEOUT, timeout))
        assert self.transport is not None
        try:
            self.transport.write(packet_for(tid), addr)
        except OSError as e:
            self.pending.pop(tid)[1].cancel()
            return defer.fail(e)
        return d

    async def announce(self, addr: tuple[str, int], info_hash: bytes, peer_id: bytes,
                       event: str, key: int, port: int) -> int:
        """Announce; returns the tracker's interval. Raises on error replies and timeouts."""
        now = self.clock.seconds()
        cached = self.conn_ids.get(addr)
        if cached is None or now - cached[1] > 60:
            action, rest = await self._request(encode_connect_request, addr)
            try:
                if action != ACTION_CONNECT:
                    raise DecodeError("not a connect reply")
                conn_id = decode_connection_id(rest)
            except DecodeError:
                raise OSError(f"udp tracker {addr}: bad connect reply") from None
            self.conn_ids[addr] = (conn_id, now)
        else:
            conn_id = cached[0]
        action, rest = await self._request(
            lambda tid: encode_announce_request(conn_id, tid, info_hash, peer_id, event, key,
                                                port),
            addr)
        if action == ACTION_ERROR:
            self.conn_ids.pop(addr, None)
            raise OSError(f"udp tracker {addr}: {rest[:200].decode('utf-8', 'replace')}")
        try:
            if action != ACTION_ANNOUNCE:
                raise DecodeError("not an announce reply")
            return decode_announce_interval(rest)
        except DecodeError:
            raise OSError(f"udp tracker {addr}: bad announce reply") from None

    def stopProtocol(self) -> None:
        for d, timer in self.pending.values():
            if timer.active():
                timer.cancel()
            d.errback(ConnectionError("udp announce client stopped"))
        self.pending.clear()


class TrackerAnnouncer:
    """Keeps the gateway's peer announced for every torrent (see the module docstring)."""

    log = Logger()

    def __init__(
        self,
        *,
        clock: IReactorTime,
        peer_id: bytes,
        port: int,
        interval: float,
        local: LocalPeers | None = None,  # the built-in tracker, or None
        local_ips: tuple[str, ...] = (),
        urls: tuple[str, ...] = (),
        http_get: Callable[..., Any] | None = None,  # treq.get
        udp: UdpAnnounceClient | None = None,
        resolve: Callable[[str], Any] | None = None,  # reactor.resolve
        key: int = 0,
    ) -> None:
        self.clock = clock
        self.peer_id = peer_id
        self.port = port
        self.interval = interval
        self.local = local
        self.local_ips = local_ips
        self.urls = urls
        self.http_get = http_get
        self.udp = udp
        self.resolve = resolve
        self.key = key
        self.torrents: dict[bytes, None] = {}
        self.results: dict[str, str] = {}  # url -> "ok" or the last error (status page, tests)
        self.announces = 0
        self._loop: LoopingCall | None = None
        self._running = False

    # ------------------------------------------------------------------ life cycle

    def start(self, info_hashes: Any) -> None:
        self._running = True
        for ih in info_hashes:
            self.add(ih)
        if self.urls:
            self._loop = LoopingCall(self._reannounce)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=False)

    def stop(self) -> defer.Deferred[Any]:
        """Remove the local peers and send ``stopped`` everywhere (at most a few seconds)."""
        self._running = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        ds = []
        for ih in list(self.torrents):
            self._local_remove(ih)
            ds.extend(self._announce_all(ih, "stopped"))
        self.torrents.clear()
        if not ds:
            return defer.succeed(None)
        done: defer.Deferred[Any] = defer.Deferred()
        all_sent = defer.DeferredList(ds, consumeErrors=True)

        def finish(_: Any = None) -> None:
            if not done.called:
                done.callback(None)

        timer = self.clock.callLater(5.0, finish)  # trackers that do not answer: give up

        def sent(_: Any) -> None:
            if timer.active():
                timer.cancel()
            finish()

        all_sent.addCallback(sent)
        return done

    # ------------------------------------------------------------------ torrents

    def add(self, info_hash: bytes) -> None:
        if info_hash in self.torrents:
            return
        self.torrents[info_hash] = None
        if self.local is not None:
            for ip in self.local_ips:
                try:
                    self.local.add_local_peer(info_hash, ip, self.port)
                except ValueError:
                    self.log.warn("cannot list {ip} as the gateway's peer", ip=ip)
        if self._running:
            self._announce_all(info_hash, "started")

    def remove(self, info_hash: bytes) -> None:
        if info_hash not in self.torrents:
            return
        del self.torrents[info_hash]
        self._local_remove(info_hash)
        if self._running:
            self._announce_all(info_hash, "stopped")

    def _local_remove(self, info_hash: bytes) -> None:
        if self.local is not None:
            for ip in self.local_ips:
                try:
                    self.local.remove_local_peer(info_hash, ip, self.port)
                except (ValueError, KeyError):
                    pass

    def _reannounce(self) -> None:
        for ih in list(self.torrents):
            self._announce_all(ih, "")

    # ------------------------------------------------------------------ remote trackers

    def _announce_all(self, info_hash: bytes, event: str) -> list[defer.Deferred[Any]]:
        out = []
        for url in self.urls:
            d = defer.Deferred.fromCoroutine(self._announce(url, info_hash, event))
            d.addErrback(self._failed, url)
            out.append(d)
        return out

    def _failed(self, failure: Any, url: str) -> None:
        self.results[url] = str(failure.value)[:200]
        self.log.info("announce to {url} failed: {why}", url=url, why=failure.value)

    async def _announce(self, url: str, info_hash: bytes, event: str) -> None:
        self.announces += 1
        scheme = urlsplit(url).scheme
        if scheme in ("http", "https"):
            if self.http_get is None:
                return
            full = http_announce_url(url, info_hash, self.peer_id, self.port, 0, event)
            response = await self.http_get(full, timeout=TIMEOUT)
            body = await response.content()
            try:
                reply = bencode.decode_dict(body)
            except DecodeError:
                raise OSError(f"HTTP {response.code}: not a bencoded reply") from None
            if b"failure reason" in reply:
                reason = reply[b"failure reason"]
                raise OSError(reason.decode("utf-8", "replace") if isinstance(reason, bytes)
                              else "failure")
            self.results[url] = "ok"
        elif scheme == "udp":
            if self.udp is None:
                return
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port or 0
            if not host or not port:
                raise OSError("udp tracker URL without host or port")
            ip = host
            if self.resolve is not None and not _is_ip(host):
                ip = await self.resolve(host)
            await self.udp.announce((ip, port), info_hash, self.peer_id, event, self.key,
                                    self.port)
            self.results[url] = "ok"


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
