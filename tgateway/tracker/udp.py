"""BEP 15 UDP tracker adapter: decode a datagram, call the swarm store, write the reply (the
packets are :mod:`tgateway.tracker.bep15`'s).

Connection ids come from :class:`~tgateway.tracker.core.ConnectionIds` (stateless, bound to the
client's address and port, valid 2 minutes). A request with a bad or expired connection id gets
an error reply (it is smaller than the request, so it cannot amplify). Replies to IPv4 clients
carry 6-byte peers, to IPv6 clients 18-byte peers; on a dual-stack socket, IPv4-mapped
addresses count as IPv4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from tgateway.tracker.bep15 import (
    UdpDecodeError,
    decode_request,
    encode_announce_reply,
    encode_connect_reply,
    encode_error_reply,
    encode_scrape_reply,
)
from tgateway.tracker.core import ConnectionIds, SwarmStore, TrackerError
from tgateway.tracker.http import AddressBook


class UdpTracker(DatagramProtocol):
    log = Logger()
    noisy = False

    def __init__(
        self,
        store: SwarmStore,
        connection_ids: ConnectionIds,
        clock: IReactorTime,
        *,
        interval: int,
        default_numwant: int,
        max_numwant: int,
    ) -> None:
        self.store = store
        self.ids = connection_ids
        self._seconds: Callable[[], float] = clock.seconds
        self.interval = interval
        self.default_numwant = default_numwant
        self.max_numwant = max_numwant
        self.addresses = AddressBook()
        # (request action bytes, reply action bytes or b"" for no reply) -> datagrams: plain
        # counts, read by the tracker's metrics when scraped (udp_counts)
        self.counts: dict[tuple[bytes, bytes], int] = {}

    _sendto: Any = None

    def startProtocol(self) -> None:
        # Replies go to the address recvfrom() just gave us, so udp.Port.write's per-call
        # address validation (a third of the write cost) is skipped by using the socket directly.
        sock = getattr(self.transport, "socket", None)
        self._sendto = sock.sendto if sock is not None else None

    def stopProtocol(self) -> None:
        self._sendto = None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        try:
            reply = self.handle(datagram, addr[0], addr[1])
        except Exception:
            self.log.failure("UDP tracker request from {host} failed", host=addr[0])
            return
        counts = self.counts
        key = (datagram[8:12], reply[:4] if reply is not None else b"")
        counts[key] = counts.get(key, 0) + 1
        if reply is None:
            return
        sendto = self._sendto
        if sendto is None:
            self.transport.write(reply, addr)  # type: ignore[union-attr]
            return
        try:
            sendto(reply, addr)
        except OSError:
            pass  # full socket buffer or unreachable client: a lost reply, the client retries

    def handle(self, datagram: bytes, host: str, port: int) -> bytes | None:
        """The reply to one datagram from (host, port), or None to stay silent."""
        try:
            req = decode_request(datagram)
        except UdpDecodeError as e:
            if e.transaction_id is None:
                return None
            return encode_error_reply(e.transaction_id, str(e))
        try:
            packed = self.addresses.pack(host)
        except ValueError:
            return None
        now = self._seconds()
        client = packed + port.to_bytes(2, "big")
        action = req[0]
        if action == 1:
            (_, tid, cid, ih, pid, _down, left, _up, event, _ip, _key, numwant, peer_port) = req
            if not self.ids.check(cid, client, now):
                return encode_error_reply(tid, "connection id expired, connect again")
            if numwant < 0:
                numwant = self.default_numwant
            elif numwant > self.max_numwant:
                numwant = self.max_numwant
            v6 = len(packed) == 16
            try:
                complete, incomplete, _d, p4, p6 = self.store.announce(
                    ih, pid, packed + peer_port.to_bytes(2, "big"), left, event, numwant, now,
                    not v6, v6,
                )
            except TrackerError as e:
                return encode_error_reply(tid, e.message)
            return encode_announce_reply(
                tid, self.interval, incomplete, complete, b"".join(p6 if v6 else p4)
            )
        if action == 0:
            return encode_connect_reply(req[1], self.ids.issue(client, now))
        # scrape
        tid, cid, hashes = req[1], req[2], req[3]
        if not self.ids.check(cid, client, now):
            return encode_error_reply(tid, "connection id expired, connect again")
        return encode_scrape_reply(tid, self.store.scrape(hashes))


_ACTIONS = {b"\x00\x00\x00\x00": "connect", b"\x00\x00\x00\x01": "announce",
            b"\x00\x00\x00\x02": "scrape"}


def udp_counts(counts: dict[tuple[bytes, bytes], int]) -> dict[tuple[str, str], int]:
    """``UdpTracker.counts`` as ``{(action, result): n}``: result ``ok``, ``error`` (an error
    reply: expired connection id, refused torrent, bad packet) or ``dropped`` (no reply)."""
    out: dict[tuple[str, str], int] = {}
    for (asked, answered), n in list(counts.items()):
        action = _ACTIONS.get(asked, "other")
        result = ("dropped" if not answered else "error" if answered == b"\x00\x00\x00\x03"
                  else "ok")
        out[(action, result)] = out.get((action, result), 0) + n
    return out
