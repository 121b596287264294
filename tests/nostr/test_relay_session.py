"""The relay codec and the sans-IO session core, with plain calls."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tgateway.nostr.event import Event, EventTemplate, parse_event, sign
from tgateway.nostr.filters import FilterError, check_filter, matches
from tgateway.nostr.relay_session import RelaySession

KEY = b"\x11" * 32
GATEWAY = b"\x22" * 32
URL = "wss://relay.example.com"


def note(content: str = "hi", kind: int = 1, tags: Any = (), created_at: int = 1000) -> Event:
    return sign(EventTemplate(kind=kind, created_at=created_at, tags=tags, content=content), KEY)


class FilterTests(SynchronousTestCase):
    def test_matches(self) -> None:
        event = note(tags=[["t", "video"], ["x", "abc"]], created_at=100)
        self.assertTrue(matches({}, event))
        self.assertTrue(matches({"ids": [event.id]}, event))
        self.assertFalse(matches({"ids": ["00" * 32]}, event))
        self.assertTrue(matches({"authors": [event.pubkey], "kinds": [1, 2]}, event))
        self.assertFalse(matches({"kinds": [2]}, event))
        self.assertTrue(matches({"#t": ["music", "video"]}, event))
        self.assertFalse(matches({"#t": ["music"]}, event))
        self.assertFalse(matches({"#p": ["a"]}, event))
        self.assertTrue(matches({"since": 100, "until": 100}, event))
        self.assertFalse(matches({"since": 101}, event))
        self.assertFalse(matches({"until": 99}, event))
        self.assertTrue(matches({"limit": 1}, event))

    def test_check_filter(self) -> None:
        self.assertEqual(check_filter({"kinds": (1,), "#t": ("a",)}), {"kinds": [1], "#t": ["a"]})
        for bad in (
            {"ids": ["AB" * 32]},
            {"authors": "x"},
            {"kinds": [True]},
            {"kinds": [70000]},
            {"#t": [1]},
            {"since": -1},
            {"limit": 1.5},
            {"search": "x"},
            [],
        ):
            with self.assertRaises(FilterError, msg=repr(bad)):
                check_filter(bad)  # type: ignore[arg-type]


class Wire:
    """Collects what a session sends."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def __call__(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def take(self) -> list[Any]:
        out, self.sent = self.sent, []
        return out


def gateway_signer(template: EventTemplate) -> Event:
    return sign(template, GATEWAY)


class SessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = RelaySession(URL, auth_signer=gateway_signer)
        self.wire = Wire()
        self.results: list[tuple[bool, str]] = []

    def on_result(self, accepted: bool, message: str) -> None:
        self.results.append((accepted, message))

    def feed(self, msg: Any, now: float = 5000.0) -> None:
        self.session.receive(json.dumps(msg), now)

    def test_publish_queued_until_connected(self) -> None:
        event = note()
        self.session.publish(event, self.on_result)
        self.assertFalse(self.session.connected)
        self.session.connection_made(self.wire)
        self.assertEqual(self.wire.take(), [["EVENT", event.to_json()]])
        self.feed(["OK", event.id, True, ""])
        self.assertEqual(self.results, [(True, "")])
        self.assertEqual(self.session.pending_publishes, 0)

    def test_publish_resent_after_reconnect(self) -> None:
        self.session.connection_made(self.wire)
        event = note()
        self.session.publish(event, self.on_result)
        self.session.connection_lost(self.wire)
        self.assertFalse(self.session.connected)
        wire2 = Wire()
        self.session.connection_made(wire2)
        self.assertEqual(wire2.take(), [["EVENT", event.to_json()]])
        self.feed(["OK", event.id, False, "blocked: no"])
        self.assertEqual(self.results, [(False, "blocked: no")])

    def test_stale_connection_lost_ignored(self) -> None:
        old = Wire()
        self.session.connection_made(old)
        self.session.connection_made(self.wire)
        self.session.connection_lost(old)
        self.assertTrue(self.session.connected)

    def test_same_event_twice_one_send_two_results(self) -> None:
        self.session.connection_made(self.wire)
        event = note()
        other: list[Any] = []
        self.session.publish(event, self.on_result)
        self.session.publish(event, lambda a, m: other.append((a, m)))
        self.assertEqual(len(self.wire.take()), 1)
        self.feed(["OK", event.id, True, "duplicate: have it"])
        self.assertEqual(self.results, [(True, "duplicate: have it")])
        self.assertEqual(other, [(True, "duplicate: have it")])

    def test_cancel_publish(self) -> None:
        self.session.connection_made(self.wire)
        event = note()
        self.session.publish(event, self.on_result)
        self.session.cancel_publish(event.id, self.on_result)
        self.assertEqual(self.session.pending_publishes, 0)
        self.feed(["OK", event.id, True, ""])
        self.assertEqual(self.results, [])

    def test_subscription_flow(self) -> None:
        self.session.connection_made(self.wire)
        got: list[Event] = []
        eose: list[bool] = []
        e1, e2 = note("a"), note("b", kind=2)
        sub = self.session.subscribe([{"kinds": [1]}], got.append, lambda: eose.append(True))
        self.assertEqual(self.wire.take(), [["REQ", sub, {"kinds": [1]}]])
        self.feed(["EVENT", sub, e1.to_json()])
        self.feed(["EVENT", sub, e1.to_json()])  # duplicate: delivered once
        self.feed(["EVENT", sub, e2.to_json()])  # does not match the filter: dropped
        self.feed(["EVENT", "other", e1.to_json()])  # unknown subscription
        forged = dict(note("c").to_json(), content="forged")
        self.feed(["EVENT", sub, forged])  # bad id: dropped
        self.feed(["EOSE", sub])
        self.assertEqual(got, [e1])
        self.assertEqual(eose, [True])
        self.assertEqual(self.session.dropped, 2)
        # live events after EOSE still arrive; after unsubscribe they do not
        e3 = note("c")
        self.feed(["EVENT", sub, e3.to_json()])
        self.session.unsubscribe(sub)
        self.assertEqual(self.wire.take(), [["CLOSE", sub]])
        self.feed(["EVENT", sub, note("d").to_json()])
        self.assertEqual(got, [e1, e3])

    def test_subscription_resent_after_reconnect(self) -> None:
        sub = self.session.subscribe([{"kinds": [1]}], lambda e: None)
        self.session.connection_made(self.wire)
        self.assertEqual(self.wire.take(), [["REQ", sub, {"kinds": [1]}]])
        self.session.connection_lost()
        self.session.connection_made(self.wire)
        self.assertEqual(self.wire.take(), [["REQ", sub, {"kinds": [1]}]])

    def test_closed(self) -> None:
        self.session.connection_made(self.wire)
        closed: list[str] = []
        sub = self.session.subscribe([{}], lambda e: None, on_closed=closed.append)
        self.feed(["CLOSED", sub, "error: too many"])
        self.assertEqual(closed, ["error: too many"])
        self.assertEqual(self.session.subscriptions, 0)

    def test_auth_answered(self) -> None:
        self.session.connection_made(self.wire)
        self.feed(["AUTH", "challenge-1"], now=1234.9)
        [[kind, obj]] = self.wire.take()
        self.assertEqual(kind, "AUTH")
        auth = parse_event(obj)
        self.assertEqual(auth.kind, 22242)
        self.assertEqual(auth.created_at, 1234)
        self.assertEqual(auth.pubkey, sign(EventTemplate(kind=1, created_at=0), GATEWAY).pubkey)
        self.assertEqual(auth.first_tag("relay"), URL)
        self.assertEqual(auth.first_tag("challenge"), "challenge-1")
        self.feed(["OK", auth.id, True, ""])
        self.assertTrue(self.session.authenticated)
        self.session.connection_lost()
        self.assertFalse(self.session.authenticated)

    def test_auth_required_publish_retried_after_auth(self) -> None:
        self.session.connection_made(self.wire)
        event = note()
        self.session.publish(event, self.on_result)
        self.wire.take()
        self.feed(["OK", event.id, False, "auth-required: log in"])
        self.assertEqual(self.results, [])  # waiting for AUTH
        self.feed(["AUTH", "c"])
        [[_, auth]] = self.wire.take()
        self.feed(["OK", auth["id"], True, ""])
        self.assertEqual(self.wire.take(), [["EVENT", event.to_json()]])
        self.feed(["OK", event.id, True, ""])
        self.assertEqual(self.results, [(True, "")])

    def test_auth_required_twice_is_final(self) -> None:
        self.session.connection_made(self.wire)
        self.feed(["AUTH", "c"])
        [[_, auth]] = self.wire.take()
        self.feed(["OK", auth["id"], True, ""])
        event = note()
        self.session.publish(event, self.on_result)
        self.feed(["OK", event.id, False, "auth-required: again"])
        self.assertEqual(self.wire.take(), [["EVENT", event.to_json()]] * 2)
        self.feed(["OK", event.id, False, "auth-required: still no"])
        self.assertEqual(self.results, [(False, "auth-required: still no")])

    def test_auth_refused_fails_waiting_work(self) -> None:
        self.session.connection_made(self.wire)
        event = note()
        closed: list[str] = []
        self.session.publish(event, self.on_result)
        sub = self.session.subscribe([{}], lambda e: None, on_closed=closed.append)
        self.feed(["OK", event.id, False, "auth-required: x"])
        self.feed(["CLOSED", sub, "auth-required: y"])
        self.feed(["AUTH", "c"])
        auth = self.wire.take()[-1][1]
        self.feed(["OK", auth["id"], False, "restricted: not you"])
        self.assertEqual(len(self.results), 1)
        self.assertFalse(self.results[0][0])
        self.assertIn("restricted: not you", self.results[0][1])
        self.assertEqual(len(closed), 1)

    def test_closed_auth_required_req_retried(self) -> None:
        self.session.connection_made(self.wire)
        sub = self.session.subscribe([{"kinds": [1]}], lambda e: None)
        self.feed(["CLOSED", sub, "auth-required: who are you"])
        self.feed(["AUTH", "c"])
        out = self.wire.take()
        self.feed(["OK", out[-1][1]["id"], True, ""])
        self.assertEqual(self.wire.take(), [["REQ", sub, {"kinds": [1]}]])

    def test_without_signer_auth_is_ignored(self) -> None:
        session = RelaySession(URL)
        session.connection_made(self.wire)
        session.receive('["AUTH","c"]', 0)
        self.assertEqual(self.wire.take(), [])
        event = note()
        session.publish(event, self.on_result)
        session.receive(json.dumps(["OK", event.id, False, "auth-required: x"]), 0)
        self.assertEqual(self.results, [(False, "auth-required: x")])

    def test_held_while_the_connection_does_not_drain(self) -> None:
        self.session.connection_made(self.wire)
        live = self.session.subscribe([{"kinds": [1]}], lambda e: None)
        early = note("early")
        self.session.publish(early, self.on_result)
        self.wire.take()
        self.session.pause_writing()
        event = note("while paused")
        self.session.publish(event, self.on_result)
        sub = self.session.subscribe([{"kinds": [2]}], lambda e: None)
        never_sent = self.session.subscribe([{"kinds": [3]}], lambda e: None)
        self.session.unsubscribe(never_sent)  # the relay never saw it: no CLOSE needed
        self.session.unsubscribe(live)  # the relay has it: its CLOSE is held
        self.feed(["AUTH", "c"])
        self.assertEqual(self.wire.take(), [])  # nothing written while paused
        self.session.resume_writing()
        sent = self.wire.take()
        self.assertEqual([m[0] for m in sent], ["AUTH", "CLOSE", "EVENT", "REQ"])
        self.assertEqual(sent[1:], [["CLOSE", live], ["EVENT", event.to_json()],
                                    ["REQ", sub, {"kinds": [2]}]])  # early was sent before
        self.feed(["OK", event.id, True, ""])
        self.assertEqual(self.results, [(True, "")])

    def test_resume_stops_when_the_connection_fills_up_again(self) -> None:
        events = [note(f"n{i}") for i in range(5)]
        session = self.session

        written: list[str] = []

        def send(text: str) -> None:
            self.wire(text)
            written.append(text)
            if len(written) == 2:
                session.pause_writing()  # the transport's buffer is full again

        session.connection_made(send)
        session.pause_writing()
        for e in events:
            session.publish(e, self.on_result)
        session.resume_writing()
        self.assertEqual(self.wire.take(), [["EVENT", e.to_json()] for e in events[:2]])
        session.resume_writing()
        self.assertEqual(self.wire.take(), [["EVENT", e.to_json()] for e in events[2:]])
        self.assertEqual(session.pending_publishes, 5)  # sent, waiting for OK
        session.connection_lost(send)  # a new connection sends all five again
        session.connection_made(self.wire)
        self.assertEqual(len(self.wire.take()), 5)

    def test_malformed_dropped_and_notice_kept(self) -> None:
        self.session.connection_made(self.wire)
        self.session.receive("garbage", 0)
        self.session.receive('["OK"]', 0)
        self.feed(["NOTICE", "slow down"])
        self.assertEqual(self.session.dropped, 2)
        self.assertEqual(self.session.last_notice, "slow down")


_frames = st.one_of(
    st.text(max_size=100),
    st.lists(
        st.one_of(
            st.sampled_from(["OK", "EVENT", "EOSE", "CLOSED", "NOTICE", "AUTH", "tg1", "tg2"]),
            st.text(max_size=10),
            st.booleans(),
            st.integers(),
            st.none(),
            st.just(note("x").to_json()),
            st.just(note("y").id),
        ),
        max_size=4,
    ).map(json.dumps),
)


class SessionPropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(_frames, max_size=8))
    def test_any_frames_never_raise(self, frames: list[str]) -> None:
        session = RelaySession(URL, auth_signer=gateway_signer)
        wire = Wire()
        session.connection_made(wire)
        session.subscribe([{}], lambda e: None, lambda: None, lambda m: None)
        session.subscribe([{"kinds": [1]}], lambda e: None)
        session.publish(note("y"), lambda a, m: None)
        for frame in frames:
            session.receive(frame, 1000.0)
        session.connection_lost()
        session.connection_made(wire)
