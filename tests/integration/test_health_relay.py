"""Health with a real relay (nostr-relay 1.14): it goes away, the relays' score drops and one
alert is logged; it comes back, the score recovers and the alert's end is logged once."""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher

from harness.gateway import RunningGateway, small_config, temp_data_dir
from harness.ports import free_tcp_port
from harness.servers import start_nostr_relay


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.2, lambda: None)


def alert_lines(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("log_format", "").startswith(f"alert {kind}")
            and e.get("alert") == "score:nostr"]


@pytest_twisted.ensureDeferred
async def test_relay_down_drops_the_score_and_alerts_once_then_recovers() -> None:
    directory = tempfile.mkdtemp(prefix="tg-health-relay-")
    port = free_tcp_port()
    relay = start_nostr_relay(directory, port=port)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    g = RunningGateway(small_config(temp_data_dir(), nostr={"relays": [relay.url]},
                                    health={"check_interval": "1h"}))
    try:
        nostr = g.gateway.components.nostr
        health = g.gateway.components.named("health").part
        await until(lambda: nostr.pool.is_connected(relay.url), 30, "the relay connection")
        result = await health.check()
        assert result.scores["nostr"] == 100 and result.alerts == []

        relay.stop()
        await until(lambda: not nostr.pool.is_connected(relay.url), 30, "the relay to go")
        for _ in range(3):
            result = await health.check()
        assert result.scores["nostr"] == 20
        assert "1 of 1 relays not connected" in result.reasons["nostr"]
        assert [a.name for a in result.alerts] == ["score:nostr"]
        assert len(alert_lines(events, "on")) == 1  # three looks, one line
        assert alert_lines(events, "off") == []

        relay = start_nostr_relay(directory, port=port)
        await until(lambda: nostr.pool.is_connected(relay.url), 60, "the relay to come back")
        for _ in range(3):
            result = await health.check()
        assert result.scores["nostr"] == 100 and result.alerts == []
        assert len(alert_lines(events, "on")) == 1 and len(alert_lines(events, "off")) == 1
    finally:
        globalLogPublisher.removeObserver(events.append)
        await g.stop()
        relay.stop()
        shutil.rmtree(directory, True)
