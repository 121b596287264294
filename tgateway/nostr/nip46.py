"""NIP-46 remote signing, client side: talk to a user's signer ("bunker") over relays.

A ``bunker://<remote-signer-pubkey>?relay=wss://...&relay=...&secret=...`` URL names the signer's
key, the relays it listens on and an optional one-time secret. The client (here: the gateway,
with a fresh key per session) sends kind 24133 events tagged ``p`` = signer, whose content is the
NIP-44 encryption of ``{"id", "method", "params": [str...]}``; the signer answers with kind 24133
events tagged ``p`` = client, content ``{"id", "result", "error"?}``.

Methods used: ``connect [signer-pubkey, secret?]`` (result ``ack``, or the secret),
``get_public_key []`` (the user's pubkey, which may differ from the signer's), ``sign_event
[event template JSON]`` (the signed event JSON) and ``ping``. A result of ``auth_url`` means the
user must approve at the URL in ``error``; the real answer comes later with the same id.

Every wait has a timeout (:class:`Nip46Timeout`). Signed events coming back are verified with
:func:`tgateway.nostr.event.parse_event` and must be exactly the template asked for, signed by
the user's key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from coincurve import PrivateKey
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tgateway.nostr import nip44
from tgateway.nostr.event import Event, EventError, EventTemplate, parse_event, sign
from tgateway.nostr.keys import public_key_of
from tgateway.nostr.pool import parse_relay_url

__all__ = [
    "NIP46_KIND",
    "BunkerClient",
    "BunkerPointer",
    "Nip46AuthUrl",
    "Nip46Error",
    "Nip46Rejected",
    "Nip46Timeout",
    "parse_bunker_url",
]

NIP46_KIND = 24133
MAX_RELAYS = 8
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class Nip46Error(Exception):
    """A remote-signing step failed; the message is fit for the API caller."""


class Nip46Timeout(Nip46Error):
    """The signer did not answer in time."""


class Nip46Rejected(Nip46Error):
    """The signer answered with an error (or with something we cannot accept)."""


class Nip46AuthUrl(Nip46Error):
    """The signer wants the user to approve at ``url`` first."""

    def __init__(self, url: str) -> None:
        super().__init__(f"the remote signer asks for approval at {url}")
        self.url = url


@dataclass(frozen=True)
class BunkerPointer:
    """A parsed ``bunker://`` URL."""

    signer_pubkey: str
    relays: tuple[str, ...]
    secret: str | None = None


def parse_bunker_url(url: str) -> BunkerPointer:
    """Parse a ``bunker://`` URL. Raises :class:`Nip46Error` naming the problem.

    The signer pubkey must be 64 hex; there must be 1..8 ``relay`` parameters, each ``ws://`` or
    ``wss://``; ``secret`` is optional. This is the syntax only: the URL comes from a user and
    makes the gateway connect where it says, so where its relays may be is checked (resolved
    first) by the outgoing-connection guard (:mod:`tgateway.netguard`) before and during every
    connection, in :class:`tgateway.nostr.nip46_login.Nip46Logins`.
    """
    if not isinstance(url, str) or len(url) > 4096:
        raise Nip46Error("bunker URL must be a string of at most 4096 characters")
    parts = urlsplit(url.strip())
    if parts.scheme != "bunker":
        raise Nip46Error("bunker URL must start with bunker://")
    pubkey = (parts.netloc or parts.path.lstrip("/")).lower()
    if not _HEX64.match(pubkey):
        raise Nip46Error("bunker URL must name the signer's public key as 64 hex characters")
    query = parse_qs(parts.query)
    relays = tuple(dict.fromkeys(r.strip() for r in query.get("relay", []) if r.strip()))
    if not relays:
        raise Nip46Error("bunker URL has no relay")
    if len(relays) > MAX_RELAYS:
        raise Nip46Error(f"bunker URL has more than {MAX_RELAYS} relays")
    for relay in relays:
        try:
            parse_relay_url(relay)
        except ValueError as e:
            raise Nip46Error(f"bunker URL has a bad relay: {e}") from None
    secrets = query.get("secret", [])
    return BunkerPointer(pubkey, relays, secrets[0] if secrets else None)


class RelayAccess(Protocol):
    """What the client needs from the relay pool."""

    def subscribe(
        self,
        relay_url: str,
        filters: Sequence[dict[str, Any]],
        on_event: Callable[[Event], None],
        on_eose: Callable[[], None] | None = None,
        on_closed: Callable[[str], None] | None = None,
    ) -> Any: ...

    async def publish(self, event: Event, relay_url: str, timeout: float = ...) -> Any: ...


class BunkerClient:
    """One session with a remote signer. Call :meth:`start` first and :meth:`close` at the end.

    ``client_key`` is the gateway's key for this conversation (a fresh one by default).
    ``on_auth_url`` is called when the signer asks for approval; without it such an answer
    raises :class:`Nip46AuthUrl` at once.
    """

    log = Logger()

    def __init__(
        self,
        pool: RelayAccess,
        pointer: BunkerPointer,
        clock: IReactorTime,
        *,
        client_key: PrivateKey | None = None,
        timeout: float = 30.0,
        on_auth_url: Callable[[str], None] | None = None,
        make_id: Callable[[], str] = lambda: os.urandom(8).hex(),
    ) -> None:
        self.pool = pool
        self.pointer = pointer
        self.clock = clock
        self.client_key = client_key or PrivateKey()
        self.client_pubkey = public_key_of(self.client_key)
        self.timeout = timeout
        self.on_auth_url = on_auth_url
        self._make_id = make_id
        self._conversation = nip44.get_conversation_key(self.client_key, pointer.signer_pubkey)
        self._pending: dict[str, Deferred[str]] = {}
        self._subscriptions: list[Any] = []
        self._added_relays: list[str] = []
        self.user_pubkey: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the signer's answers on every bunker relay."""
        since = max(0, int(self.clock.seconds()) - 60)
        flt = {
            "kinds": [NIP46_KIND],
            "authors": [self.pointer.signer_pubkey],
            "#p": [self.client_pubkey],
            "since": since,
        }
        known = set(getattr(self.pool, "urls", ()))
        self._added_relays = [r for r in self.pointer.relays if r not in known]
        for relay in self.pointer.relays:
            self._subscriptions.append(self.pool.subscribe(relay, [flt], self._on_event))

    def close(self) -> None:
        """Close the subscriptions and fail what still waits."""
        for sub in self._subscriptions:
            sub.close()
        self._subscriptions = []
        for d in list(self._pending.values()):
            d.cancel()

    async def aclose(self) -> None:
        """:meth:`close`, then disconnect from the bunker relays this session added to the pool
        (relays the pool already had, e.g. configured ones, stay)."""
        self.close()
        added, self._added_relays = self._added_relays, []
        remove = getattr(self.pool, "remove_relay", None)
        if remove is not None:
            for relay in added:
                await remove(relay)

    # -- incoming --------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.pubkey != self.pointer.signer_pubkey or event.kind != NIP46_KIND:
            return
        try:
            message = json.loads(nip44.decrypt(event.content, self._conversation))
        except (nip44.Nip44Error, ValueError) as e:
            self.log.warn("undecryptable NIP-46 answer {id}: {e}", id=event.id, e=str(e))
            return
        if not isinstance(message, dict) or not isinstance(message.get("id"), str):
            return
        d = self._pending.get(message["id"])
        if d is None or d.called:
            return
        result, error = message.get("result"), message.get("error")
        if result == "auth_url" and isinstance(error, str):
            if self.on_auth_url is None:
                d.errback(Nip46AuthUrl(error))
            else:
                self.on_auth_url(error)  # keep waiting for the real answer
            return
        if isinstance(error, str) and error:
            d.errback(Nip46Rejected(f"the remote signer refused: {error[:300]}"))
        elif isinstance(result, str):
            d.callback(result)
        else:
            d.errback(Nip46Rejected("the remote signer sent an answer without a result"))

    # -- requests --------------------------------------------------------------------------------

    async def request(
        self, method: str, params: Sequence[str], timeout: float | None = None
    ) -> str:
        """Send one request and return its ``result``. Raises a :class:`Nip46Error`."""
        timeout = self.timeout if timeout is None else timeout
        request_id = self._make_id()
        body = json.dumps({"id": request_id, "method": method, "params": list(params)})
        event = sign(
            EventTemplate(
                kind=NIP46_KIND,
                created_at=int(self.clock.seconds()),
                tags=(("p", self.pointer.signer_pubkey),),
                content=nip44.encrypt(body, self._conversation),
            ),
            self.client_key,
        )

        def timed_out(result: object, seconds: float) -> str:
            raise Nip46Timeout(f"the remote signer did not answer {method} within {seconds:g} s")

        d: Deferred[str] = Deferred()
        self._pending[request_id] = d
        d.addTimeout(timeout, self.clock, onTimeoutCancel=timed_out)
        for relay in self.pointer.relays:
            sending = Deferred.fromCoroutine(self.pool.publish(event, relay, timeout))
            sending.addErrback(self._not_confirmed, relay)
        try:
            return await d
        finally:
            self._pending.pop(request_id, None)

    def _not_confirmed(self, failure: Failure, relay: str) -> None:
        self.log.info(
            "NIP-46 request to {relay} not confirmed: {why}", relay=relay, why=failure.value
        )

    async def connect(self) -> None:
        """``connect`` with the URL's secret; the signer must answer ``ack`` (or the secret)."""
        params = [self.pointer.signer_pubkey]
        if self.pointer.secret:
            params.append(self.pointer.secret)
        result = await self.request("connect", params)
        if result != "ack" and (not self.pointer.secret or result != self.pointer.secret):
            raise Nip46Rejected("the remote signer did not acknowledge connect")

    async def get_public_key(self) -> str:
        """The user's public key (hex), as the signer reports it."""
        result = (await self.request("get_public_key", [])).lower()
        if not _HEX64.match(result):
            raise Nip46Rejected("the remote signer sent an invalid public key")
        self.user_pubkey = result
        return result

    async def sign_event(self, template: EventTemplate) -> Event:
        """Have the signer sign ``template``; the answer must be that event, verified, by the
        user's key (call :meth:`get_public_key` first)."""
        if self.user_pubkey is None:
            await self.get_public_key()
        unsigned = {
            "kind": template.kind,
            "created_at": template.created_at,
            "tags": [list(t) for t in template.tags],
            "content": template.content,
            "pubkey": self.user_pubkey,
        }
        result = await self.request("sign_event", [json.dumps(unsigned)])
        try:
            event = parse_event(json.loads(result))
        except (ValueError, EventError) as e:
            raise Nip46Rejected(f"the remote signer returned an invalid event: {e}") from None
        if event.pubkey != self.user_pubkey:
            raise Nip46Rejected("the remote signer signed with another key")
        if (event.kind, event.created_at, event.tags, event.content) != (
            template.kind,
            template.created_at,
            template.tags,
            template.content,
        ):
            raise Nip46Rejected("the remote signer signed a different event")
        return event

    async def ping(self) -> None:
        if await self.request("ping", []) != "pong":
            raise Nip46Rejected("the remote signer did not answer pong")
