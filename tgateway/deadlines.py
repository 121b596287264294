"""The one deadline for a complete HTTP request head (slowloris).

A connection's idle timeout is reset by every byte, so a client that sends one header byte
every few seconds could hold a connection (and a descriptor, a parser, a Request) for ever. Every
HTTP server the gateway runs (the twisted.web sites of ``gateway.port`` and ``blossom_server.port``
through ``tgateway.http.site.StreamingSite``, and the tracker's dedicated ``tracker.http_port``)
therefore gives each request head :data:`HEAD_TIMEOUT` seconds from its first byte to its final
empty line; then it answers 408 and closes. Waiting for that first byte is the idle timeout's job.
Time comes from the ``call_later`` the server passes in, so tests run it on a fake clock or with a
short deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# nginx's client_header_timeout is 60 s, Apache's mod_reqtimeout allows 20-40 s; a real client
# sends its head in one packet, so 30 s is generous even on a bad mobile link.
HEAD_TIMEOUT = 30.0


class HeadDeadline:
    """A timer armed at the first byte of a request head and disarmed when the head is complete
    (or the connection is gone); ``expired`` is called if it runs out first."""

    def __init__(self, call_later: Callable[..., Any], timeout: float,
                 expired: Callable[[], None]) -> None:
        self._call_later = call_later
        self.timeout = timeout
        self._expired = expired
        self._call: Any = None

    @property
    def armed(self) -> bool:
        return self._call is not None

    def head_started(self) -> None:
        """Bytes of a head arrived: start counting, unless already counting for this head."""
        if self._call is None:
            self._call = self._call_later(self.timeout, self._fire)

    def head_complete(self) -> None:
        """The head is in (or the connection is closing): stop counting."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _fire(self) -> None:
        self._call = None
        self._expired()
