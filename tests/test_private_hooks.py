"""Contracts for the library internals the gateway reaches into for speed.

Each hook reads attributes that are not part of the library's public API, and most of them fall
back quietly when an attribute is missing (``getattr(channel, "_transferDecoder", None)``): an
upgrade that renamed one would not break the gateway, it would make it slow without a word. One
test per hook asserts exactly what the code relies on, so such an upgrade fails here, loudly,
naming the hook:

- twisted.web's ``HTTPChannel`` (``tgateway/http/site.py``, ``tgateway/http/body_thread.py``): the
  request line in ``_command``/``_path``/``_version`` when ``gotLength`` runs, the body's
  ``_IdentityTransferDecoder`` with ``contentLength`` and ``dataCallback``, the parser's buffers
  ``_buffer``/``_dataBuffer``, and ``_send100Continue``;
- Twisted's TCP transport (``tgateway/tracker/http.py`` ``send_in_place``, sendfile in
  ``tgateway/storage/reader.py``): ``socket``, ``TLS``, ``dataBuffer``/``offset``/``_tempDataLen``
  (what is still queued), ``producerPaused``, ``startWriting``;
- autobahn's ``WebSocketServerProtocol`` (the WebSocket tracker's frame fast path,
  ``tgateway/tracker/ws.py``): ``state``/``STATE_OPEN``, the unparsed bytes in ``data``, a partly
  read frame in ``current_frame``, and ``sendData(data, sync, chopsize)``.

The fourth, coincurve's ``_libsecp256k1`` (BIP-340 signing with a 32-byte auxiliary random, in
``tgateway/nostr/event.py``), is covered by the BIP-340 test vectors in tests/nostr/test_event.py,
which sign through it and compare every byte.
"""

from __future__ import annotations

import inspect
import socket
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import http

# --- twisted.web: the request line, the body decoder, 100 Continue -------------------------------


class _Seen(http.Request):
    seen: dict[str, Any] = {}

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        _Seen.seen.update(
            command=channel._command, path=channel._path, version=channel._version,
            decoder=channel._transferDecoder, has_buffer=hasattr(channel, "_buffer"),
            has_data_buffer=hasattr(channel, "_dataBuffer"),
        )
        super().gotLength(length)


class TwistedWebTests(SynchronousTestCase):
    def test_request_line_and_body_decoder_as_the_body_reader_reads_them(self) -> None:
        channel = http.HTTPChannel()
        channel.requestFactory = _Seen
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"PUT /api/upload?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
        seen = _Seen.seen
        assert (seen["command"], seen["path"], seen["version"]) == (b"PUT", b"/api/upload?x=1", b"HTTP/1.1")
        decoder = seen["decoder"]
        assert type(decoder) is http._IdentityTransferDecoder
        assert decoder.contentLength == 10 and callable(decoder.dataCallback)
        assert seen["has_buffer"] and seen["has_data_buffer"]
        # The body thread hands the rest back through the decoder: contentLength left, dataReceived.
        decoder.dataReceived(b"12345")
        assert decoder.contentLength == 5
        channel.connectionLost(None)

    def test_sends_100_continue_on_request(self) -> None:
        channel = http.HTTPChannel()
        transport = StringTransport()
        channel.makeConnection(transport)
        channel._version = b"HTTP/1.1"
        channel._send100Continue()
        assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
        channel.connectionLost(None)


# --- Twisted TCP: what is queued, and the socket -------------------------------------------------


class TcpTransportTests(TestCase):
    async def test_queue_and_socket_as_send_in_place_and_sendfile_read_them(self) -> None:
        connected: Deferred[tcp.Connection] = Deferred()

        class Server(Protocol):
            def connectionMade(self) -> None:
                connected.callback(self.transport)

        port = reactor.listenTCP(0, Factory.forProtocol(Server), interface="127.0.0.1")
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        try:
            transport = await connected
            assert isinstance(transport, tcp.Connection)
            assert type(transport).__module__ == "twisted.internet.tcp"
            assert transport.TLS is False
            assert transport.socket.fileno() >= 0
            assert transport.connected and not transport.disconnecting
            for attr in ("producerPaused", "startWriting"):
                assert hasattr(transport, attr), attr
            # Nothing queued: the socket may be written in place.
            assert transport._tempDataLen == 0 and transport.offset == len(transport.dataBuffer)
            # A write is queued (counted in _tempDataLen) until the reactor's next writable event.
            transport.write(b"abc")
            assert transport._tempDataLen == 3
            transport.loseConnection()
        finally:
            client.close()
            await port.stopListening()


# --- autobahn: the WebSocket frame parser's state ------------------------------------------------


class _Ws(WebSocketServerProtocol):
    def onConnect(self, request: Any) -> None:
        return None


def _open_websocket() -> tuple[_Ws, StringTransport]:
    factory = WebSocketServerFactory("ws://127.0.0.1:1")
    factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=0, closeHandshakeTimeout=0)
    factory.protocol = _Ws
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert b"101 Switching Protocols" in transport.value()
    return proto, transport


class AutobahnTests(SynchronousTestCase):
    def test_frame_state_as_the_tracker_fast_path_reads_it(self) -> None:
        proto, _ = _open_websocket()
        assert proto.state == WebSocketServerProtocol.STATE_OPEN
        # Between frames: nothing held, no frame in progress (the fast path may parse).
        assert proto.data == b"" and proto.current_frame is None
        # Half a masked text frame given to autobahn: it holds it, so the fast path must not parse.
        payload = b'{"action":"announce"}'
        key = b"\x01\x02\x03\x04"
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frame = bytes([0x81, 0x80 | len(payload)]) + key + masked
        WebSocketServerProtocol.dataReceived(proto, frame[:10])
        assert proto.data != b"" or proto.current_frame is not None

    def test_send_data_signature_the_tracker_overrides(self) -> None:
        params = list(inspect.signature(WebSocketServerProtocol.sendData).parameters)
        assert params[:4] == ["self", "data", "sync", "chopsize"]

