"""A NIP-46 remote signer for in-memory tests, hooked into a :class:`FakeRelay`."""

from __future__ import annotations

import json
from typing import Any

from tgateway.nostr import nip44
from tgateway.nostr.event import Event, EventTemplate, public_key_hex, sign

from .fakerelay import FakeRelay


class FakeSigner:
    """Answers kind 24133 requests addressed to ``signer_key``, signing with ``user_key``.

    ``mode``: ``normal``, ``silent`` (never answers), ``auth_url`` (the first sign_event gets an
    auth_url answer; the real answer follows when ``approve()`` is called), ``refuse`` (errors),
    ``tamper`` (signs a different content), ``rebind`` (signs with the ``relay`` tag changed to
    another server), ``unbind`` (signs without the ``relay`` tag).
    """

    def __init__(
        self,
        relay: FakeRelay,
        signer_key: bytes,
        user_key: bytes,
        *,
        secret: str | None = None,
        mode: str = "normal",
    ) -> None:
        self.relay = relay
        self.signer_key = signer_key
        self.user_key = user_key
        self.signer_pubkey = public_key_hex(signer_key)
        self.secret = secret
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self._held: list[tuple[Event, dict[str, Any]]] = []
        self.asked_approval = False
        relay.on_store.append(self.handle)

    def handle(self, event: Event) -> None:
        if event.kind != 24133 or event.first_tag("p") != self.signer_pubkey:
            return
        key = nip44.get_conversation_key(self.signer_key, event.pubkey)
        request = json.loads(nip44.decrypt(event.content, key))
        self.requests.append(request)
        if self.mode == "silent":
            return
        if (
            self.mode == "auth_url"
            and request["method"] == "sign_event"
            and not self.asked_approval
        ):
            self.asked_approval = True
            self._held.append((event, request))
            self.answer(
                event,
                {"id": request["id"], "result": "auth_url", "error": "https://signer.test/approve"},
            )
            return
        self.answer(event, self.result(request))

    def approve(self) -> None:
        held, self._held = self._held, []
        for event, request in held:
            self.answer(event, self.result(request))

    def result(self, request: dict[str, Any]) -> dict[str, Any]:
        rid, method, params = request["id"], request["method"], request["params"]
        if self.mode == "refuse":
            return {"id": rid, "result": "", "error": "user said no"}
        if method == "connect":
            if params[0] != self.signer_pubkey or (self.secret and params[1:2] != [self.secret]):
                return {"id": rid, "result": "", "error": "bad secret"}
            return {"id": rid, "result": "ack"}
        if method == "get_public_key":
            return {"id": rid, "result": public_key_hex(self.user_key)}
        if method == "ping":
            return {"id": rid, "result": "pong"}
        if method == "sign_event":
            t = json.loads(params[0])
            content = t["content"] + (" tampered" if self.mode == "tamper" else "")
            tags = [list(tag) for tag in t["tags"]]
            if self.mode == "rebind":
                tags = [["relay", "wss://evil.relay.example"] if tag[0] == "relay" else tag
                        for tag in tags]
            elif self.mode == "unbind":
                tags = [tag for tag in tags if tag[0] != "relay"]
            signed = sign(
                EventTemplate(
                    kind=t["kind"], created_at=t["created_at"], tags=tags, content=content
                ),
                self.user_key,
            )
            return {"id": rid, "result": signed.dumps()}
        return {"id": rid, "result": "", "error": f"unknown method {method}"}

    def answer(self, request_event: Event, body: dict[str, Any]) -> None:
        key = nip44.get_conversation_key(self.signer_key, request_event.pubkey)
        response = sign(
            EventTemplate(
                kind=24133,
                created_at=request_event.created_at,
                tags=(("p", request_event.pubkey),),
                content=nip44.encrypt(json.dumps(body), key),
            ),
            self.signer_key,
        )
        self.relay.deliver(response)
