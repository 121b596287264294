"""The configuration's checks across keys and sections (the values themselves are checked by
:mod:`tgateway.configparse` as each section is parsed): sizes and intervals that must agree, the
public URLs, the relays, and the ``tor`` section's combinations."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tgateway.configparse import ConfigError

if TYPE_CHECKING:
    from tgateway.config import Config

#: the most points health.history keeps per series (a week of minutes)
HISTORY_MAX_POINTS = 7 * 24 * 60

__all__ = ["cross_checks"]


def cross_checks(config: Config) -> None:
    """The checks across keys and sections, after each value was parsed; ConfigError names the key."""
    st = config.storage
    if st.blob_threshold < st.chunk_size:
        raise ConfigError(
            f"storage.blob_threshold: got {st.blob_threshold}, expected at least "
            f"storage.chunk_size ({st.chunk_size})"
        )
    tr = config.tracker
    if tr.min_interval > tr.announce_interval:
        raise ConfigError(
            f"tracker.min_interval: got {tr.min_interval:g}, expected at most "
            f"tracker.announce_interval ({tr.announce_interval:g})"
        )
    if tr.default_numwant > tr.max_numwant:
        raise ConfigError(
            f"tracker.default_numwant: got {tr.default_numwant}, expected at most "
            f"tracker.max_numwant ({tr.max_numwant})"
        )
    for name, url in (
        ("gateway.public_url", config.gateway.public_url),
        ("blossom_server.public_url", config.blossom_server.public_url),
    ):
        if url and not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
            raise ConfigError(f"{name}: got {url!r}, expected an http:// or https:// URL")
    history = config.health.history
    if not 1 <= round(history.span / history.interval) <= HISTORY_MAX_POINTS:
        raise ConfigError(
            f"health.history.span: got {history.span:g}, expected from health.history.interval "
            f"({history.interval:g}) to {HISTORY_MAX_POINTS} times it"
        )
    _tor_checks(config)
    for i, relay in enumerate(config.nostr.relays + config.nostr.video_relays):
        if not re.match(r"^wss?://[^/\s]+", relay):
            raise ConfigError(f"nostr.relays[{i}]: got {relay!r}, expected a ws:// or wss:// URL")


def _is_control_endpoint(description: str) -> bool:
    """A ``unix:PATH`` or ``tcp:HOST:PORT`` client endpoint description."""
    from twisted.internet.endpoints import clientFromString

    if not re.match(r"^(unix:/\S+|tcp:\S+)$", description):
        return False
    try:
        clientFromString(object(), description)  # parsed only; nothing connects
    except (TypeError, ValueError):
        return False
    return True


# torrc options the gateway sets for the tor it launches (tgateway.tor.process).
_TOR_MANAGED = frozenset({"datadirectory", "controlport", "controlsocket", "cookieauthentication",
                          "cookieauthfile", "__owningcontrollerprocess", "runasdaemon"})


def _tor_checks(config: Config) -> None:
    tor = config.tor
    if tor.control_port:
        if not _is_control_endpoint(tor.control_port):
            raise ConfigError(f"tor.control_port: got {tor.control_port!r}, expected a client endpoint "
                              "such as unix:/run/tor/control or tcp:127.0.0.1:9051")
        # Options of the launched tor have no effect on one the gateway attaches to.
        if tor.torrc:
            raise ConfigError("tor.torrc: the lines are for a tor the gateway launches; with "
                              "tor.control_port set, put them in that tor's own torrc")
        if tor.binary != _default_tor_binary():
            raise ConfigError("tor.binary: only used to launch tor; with tor.control_port set the "
                              "gateway attaches to a running tor")
    for i, line in enumerate(tor.torrc):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\s+\S.*)?$", line) or "\n" in line:
            raise ConfigError(f"tor.torrc[{i}]: got {line!r}, expected one torrc line: an option "
                              "name and its value")
        if line.split(None, 1)[0].lower() in _TOR_MANAGED:
            raise ConfigError(f"tor.torrc[{i}]: got {line!r}; the gateway sets "
                              f"{line.split(None, 1)[0]} itself")
    if tor.gateway_port == tor.blossom_port:
        raise ConfigError(f"tor.blossom_port: got {tor.blossom_port}, expected a port other than "
                          f"tor.gateway_port ({tor.gateway_port})")


def _default_tor_binary() -> str:
    from tgateway.config import TorConfig

    return TorConfig.binary
