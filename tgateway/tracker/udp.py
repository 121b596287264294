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

    # Datagrams since start, by what they asked and got: plain ints (an attribute increment is
    # the cheapest count there is; a UDP announce costs a few microseconds in all), read by the
    # tracker's metrics when scraped (udp_counts).
    connects = 0
    announces = 0
    announce_errors = 0  # error replies: expired connection id, refused torrent
    scrapes = 0
    scrape_errors = 0
    malformed = 0  # not a request: an error reply when it had a transaction id, else silence
    dropped = 0  # from an address the tracker cannot list
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
            self.malformed += 1
            if e.transaction_id is None:
                return None
            return encode_error_reply(e.transaction_id, str(e))
        try:
            packed = self.addresses.pack(host)
        except ValueError:
            self.dropped += 1
            return None
        now = self._seconds()
        client = packed + port.to_bytes(2, "big")
        action = req[0]
        if action == 1:
            (_, tid, cid, ih, pid, _down, left, _up, event, _ip, _key, numwant, peer_port) = req
            if not self.ids.check(cid, client, now):
                self.announce_errors += 1
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
                self.announce_errors += 1
                return encode_error_reply(tid, e.message)
            self.announces += 1
            return encode_announce_reply(
                tid, self.interval, incomplete, complete, b"".join(p6 if v6 else p4)
            )
        if action == 0:
            self.connects += 1
            return encode_connect_reply(req[1], self.ids.issue(client, now))
        # scrape
        tid, cid, hashes = req[1], req[2], req[3]
        if not self.ids.check(cid, client, now):
            self.scrape_errors += 1
            return encode_error_reply(tid, "connection id expired, connect again")
        self.scrapes += 1
        return encode_scrape_reply(tid, self.store.scrape(hashes))


def udp_counts(udp: UdpTracker) -> dict[tuple[str, str], int]:
    """The datagrams ``udp`` took, as ``{(action, result): n}``: result ``ok``, ``error`` (an
    error reply) or ``dropped`` (no reply); action ``other`` for what was not a request."""
    return {("connect", "ok"): udp.connects,
            ("announce", "ok"): udp.announces, ("announce", "error"): udp.announce_errors,
            ("scrape", "ok"): udp.scrapes, ("scrape", "error"): udp.scrape_errors,
            ("other", "error"): udp.malformed, ("other", "dropped"): udp.dropped}
