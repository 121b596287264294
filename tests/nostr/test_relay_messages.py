"""The relay message codec (:mod:`tgateway.nostr.relay_messages`)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tgateway.nostr.event import Event, EventTemplate, sign
from tgateway.nostr.relay_messages import (
    AuthMessage,
    ClosedMessage,
    EoseMessage,
    EventMessage,
    NoticeMessage,
    OkMessage,
    RelayMessageError,
    decode_relay_message,
    encode_close,
    encode_event,
    encode_req,
)

KEY = b"\x11" * 32


def note(content: str = "hi", kind: int = 1, tags: Any = (), created_at: int = 1000) -> Event:
    return sign(EventTemplate(kind=kind, created_at=created_at, tags=tags, content=content), KEY)


class CodecTests(SynchronousTestCase):
    def test_encoders(self) -> None:
        event = note()
        self.assertEqual(json.loads(encode_event(event)), ["EVENT", event.to_json()])
        self.assertEqual(
            encode_req("s1", [{"kinds": [1]}, {"limit": 2}]),
            '["REQ","s1",{"kinds":[1]},{"limit":2}]',
        )
        self.assertEqual(encode_close("s1"), '["CLOSE","s1"]')

    def test_decode_each_type(self) -> None:
        event = note()
        self.assertEqual(
            decode_relay_message(f'["OK","{event.id}",true,""]'), OkMessage(event.id, True, "")
        )
        self.assertEqual(decode_relay_message('["OK","x",false]'), OkMessage("x", False, ""))
        self.assertEqual(
            decode_relay_message(json.dumps(["EVENT", "s", event.to_json()])),
            EventMessage("s", event),
        )
        self.assertEqual(decode_relay_message('["EOSE","s"]'), EoseMessage("s"))
        self.assertEqual(
            decode_relay_message('["CLOSED","s","error: x"]'), ClosedMessage("s", "error: x")
        )
        self.assertEqual(decode_relay_message('["NOTICE","hello"]'), NoticeMessage("hello"))
        self.assertEqual(decode_relay_message('["AUTH","chal"]'), AuthMessage("chal"))

    def test_malformed(self) -> None:
        event = note().to_json()
        forged = dict(event, content="changed")
        for text in [
            "",
            "{}",
            "[]",
            "[1]",
            '["OK"]',
            '["OK","x","true",""]',
            '["OK","x",true,1]',
            '["EVENT","s"]',
            json.dumps(["EVENT", "s", forged]),
            json.dumps(["EVENT", 1, event]),
            json.dumps(["EVENT", "s" * 65, event]),
            '["EOSE"]',
            '["NOTICE",{}]',
            '["AUTH"]',
            '["COUNT","s",{"count":1}]',
            '["WHAT"]',
            "[" * 5000,
        ]:
            with self.assertRaises(RelayMessageError, msg=text[:60]):
                decode_relay_message(text)

    @settings(max_examples=300, deadline=None)
    @given(
        st.one_of(
            st.text(max_size=200),
            st.lists(
                st.one_of(
                    st.sampled_from(["OK", "EVENT", "EOSE", "CLOSED", "NOTICE", "AUTH"]),
                    st.text(max_size=10),
                    st.booleans(),
                    st.integers(),
                    st.none(),
                    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
                ),
                max_size=5,
            ).map(json.dumps),
        )
    )
    def test_garbage_raises_only_relay_message_error(self, text: str) -> None:
        try:
            decode_relay_message(text)
        except RelayMessageError:
            pass
