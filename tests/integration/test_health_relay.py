"""Health with a real relay (nostr-relay 1.14): it goes away, the relays' score drops and one
alert is logged; it comes back, the score recovers and the alert's end is logged once."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from harness.gateway import case_data_dir, small_config, start_gateway
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


class HealthRelayTests(TestCase):
    timeout = 180

    async def test_relay_down_drops_the_score_and_alerts_once_then_recovers(self) -> None:
        directory = case_data_dir(self)
        port = free_tcp_port()
        relays = [start_nostr_relay(directory, port=port)]  # (stopped after the gateway)
        self.addCleanup(lambda: [r.stop() for r in relays])
        relay = relays[0]
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        g = start_gateway(self, small_config(case_data_dir(self), nostr={"relays": [relay.url]},
                                             health={"check_interval": "1h"}))
        nostr = g.gateway.components.nostr
        health = g.gateway.components.named("health").part
        await until(lambda: nostr.pool.is_connected(relay.url), 30, "the relay connection")
        result = await health.check()
        self.assertEqual(result.scores["nostr"], 100)
        self.assertEqual(result.alerts, [])

        relay.stop()
        await until(lambda: not nostr.pool.is_connected(relay.url), 30, "the relay to go")
        for _ in range(3):
            result = await health.check()
        self.assertEqual(result.scores["nostr"], 20)
        self.assertIn("1 of 1 relays not connected", result.reasons["nostr"])
        self.assertEqual([a.name for a in result.alerts], ["score:nostr"])
        self.assertEqual(len(alert_lines(events, "on")), 1)  # three looks, one line
        self.assertEqual(alert_lines(events, "off"), [])

        # (on a thread: the gateway keeps running, and reconnecting, while the relay starts)
        relay = await threads.deferToThread(start_nostr_relay, directory, port=port)
        relays.append(relay)
        await until(lambda: nostr.pool.is_connected(relay.url), 60, "the relay to come back")
        for _ in range(3):
            result = await health.check()
        self.assertEqual(result.scores["nostr"], 100)
        self.assertEqual(result.alerts, [])
        self.assertEqual(len(alert_lines(events, "on")), 1)
        self.assertEqual(len(alert_lines(events, "off")), 1)
