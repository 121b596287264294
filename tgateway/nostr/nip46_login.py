"""NIP-46 sign-in: run the conversation with a user's remote signer and track its progress.

``POST /api/auth/login`` with ``auth_type: nip46`` and a ``bunker://`` URL starts a
:class:`Nip46Attempt`: over the bunker's relays the gateway (with a fresh key) sends ``connect``,
``get_public_key`` and ``sign_event`` of a kind 22242 event carrying a one-time challenge and a
``relay`` tag naming the gateway (its public URL); the signed event is checked like a NIP-07
login (:func:`tgateway.nostr.login.verify_login_event`, same :class:`LoginBinding`).

The bunker URL comes from the user and makes the gateway connect where it says. Its relays go
through the outgoing-connection guard (:class:`tgateway.netguard.OutgoingGuard`, switch
``nostr.allow_private_bunker_relays``): :meth:`Nip46Logins.start` resolves and checks each new
relay before anything connects (a refused one is a :class:`Nip46Error`, a 400 for the caller),
and the pool connects to them through the guard's endpoint, which checks again and connects to
the address it checked. A relay that cannot be reached (refused, not a WebSocket server) ends
the attempt at once with the reason, instead of waiting for the signer's timeout.

The HTTP request waits until the attempt ends or the signer answers ``auth_url`` (the user must
approve at that URL first). In the second case the caller gets the URL and an attempt id and
polls with it; the attempt keeps running in the background until the signer answers or the
per-request timeout passes. Attempts are kept for a short while after they end so a poll can
collect the result, which is handed out once.

Bunker relays that the pool did not have before are reference-counted here and dropped when the
last attempt using them ends (concurrent logins through the same relay do not cut each other off).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tgateway.netguard import NetGuardError, OutgoingGuard
from tgateway.nostr.event import EventTemplate
from tgateway.nostr.login import ChallengeStore, LoginBinding, verify_login_event
from tgateway.nostr.nip46 import (
    BunkerClient,
    BunkerPointer,
    Nip46Error,
    Nip46Rejected,
    parse_bunker_url,
)
from tgateway.nostr.pool import RelayTimeout, RelayUnreachable, parse_relay_url

__all__ = ["Nip46Attempt", "Nip46Busy", "Nip46Logins"]

LOGIN_KIND = 22242


class Nip46Busy(Nip46Error):
    """Too many NIP-46 logins are running at once."""


class Nip46Attempt:
    """One NIP-46 login in progress (or recently ended)."""

    def __init__(self, attempt_id: str, started_at: float) -> None:
        self.id = attempt_id
        self.started_at = started_at
        self.ended_at: float | None = None
        self.auth_url: str | None = None
        self.pubkey: str | None = None
        self.error: Nip46Error | None = None
        self.claimed = False
        self._waiters: list[Deferred[None]] = []

    @property
    def finished(self) -> bool:
        return self.ended_at is not None

    def next_change(self) -> Deferred[None]:
        """Fires at the next change: an ``auth_url`` from the signer, or the end."""
        d: Deferred[None] = Deferred(lambda d: self._waiters.remove(d) if d in self._waiters else None)
        self._waiters.append(d)
        return d

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def _set_auth_url(self, url: str) -> None:
        self.auth_url = url
        self._notify()

    def _end(self, now: float, pubkey: str | None, error: Nip46Error | None) -> None:
        self.ended_at = now
        self.pubkey = pubkey
        self.error = error
        self._notify()


class Nip46Logins:
    """Starts and tracks NIP-46 login attempts on the gateway's relay pool."""

    log = Logger()

    def __init__(
        self,
        pool: Any,
        clock: IReactorTime,
        *,
        guard: OutgoingGuard,
        binding: LoginBinding,
        timeout: float = 30.0,
        max_running: int = 100,
        keep_finished: float = 300.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.guard = guard
        self.binding = binding
        self.timeout = timeout
        self.max_running = max_running
        self.keep_finished = keep_finished
        self._random = random_bytes
        self._challenges = ChallengeStore(ttl=4 * timeout + 60, random_bytes=random_bytes)
        self._attempts: OrderedDict[str, Nip46Attempt] = OrderedDict()
        self._relay_users: dict[str, int] = {}
        self._running: set[Deferred[None]] = set()

    def _expire(self, now: float) -> None:
        for attempt_id in list(self._attempts):
            a = self._attempts[attempt_id]
            if a.ended_at is not None and now - a.ended_at > self.keep_finished:
                del self._attempts[attempt_id]

    def running(self) -> int:
        return sum(1 for a in self._attempts.values() if not a.finished)

    async def start(self, bunker_url: str) -> Nip46Attempt:
        """Begin a login. Raises :class:`Nip46Error` for a bad URL or a relay the guard refuses
        (nothing is connected then), :class:`Nip46Busy` when too many run at once."""
        pointer = parse_bunker_url(bunker_url)
        self._expire(self.clock.seconds())
        if self.running() >= self.max_running:
            raise Nip46Busy("too many remote-signer logins are in progress; retry later")
        known = set(getattr(self.pool, "urls", ()))
        for relay in pointer.relays:
            if relay in known:
                continue  # configured by the operator, or already checked for another attempt
            host, port, _ = parse_relay_url(relay)
            try:
                await self.guard.resolve(host, port)
            except NetGuardError as e:
                raise Nip46Error(f"bunker URL relay {relay}: {e.message}") from None
        now = self.clock.seconds()
        if self.running() >= self.max_running:
            raise Nip46Busy("too many remote-signer logins are in progress; retry later")
        attempt = Nip46Attempt(self._random(16).hex(), now)
        self._attempts[attempt.id] = attempt
        d = Deferred.fromCoroutine(self._run(attempt, pointer))
        self._running.add(d)

        def finished(result: object) -> None:
            self._running.discard(d)
            if isinstance(result, Failure):
                self.log.failure("NIP-46 login {id} crashed", result, id=attempt.id)

        d.addBoth(finished)
        return attempt

    def get(self, attempt_id: str) -> Nip46Attempt | None:
        self._expire(self.clock.seconds())
        if not isinstance(attempt_id, str):
            return None
        return self._attempts.get(attempt_id)

    async def _run(self, attempt: Nip46Attempt, pointer: BunkerPointer) -> None:
        known = set(getattr(self.pool, "urls", ()))
        added = [r for r in pointer.relays if r not in known or r in self._relay_users]
        for r in added:
            self._relay_users[r] = self._relay_users.get(r, 0) + 1
            self.pool.relay(r, self.guard.endpoint)  # a relay the user named: through the guard
        client = BunkerClient(
            self.pool, pointer, self.clock, timeout=self.timeout, on_auth_url=attempt._set_auth_url
        )
        pubkey: str | None = None
        error: Nip46Error | None = None
        try:
            client.start()
            await self._reach(pointer.relays)
            await client.connect()
            user = await client.get_public_key()
            now = self.clock.seconds()
            challenge = self._challenges.issue(now)
            template = EventTemplate(
                kind=LOGIN_KIND,
                created_at=int(now),
                tags=(("relay", self.binding.base_url), ("challenge", challenge.value)),
                content="tgateway login",
            )
            event = await client.sign_event(template)
            checked = verify_login_event(
                event.to_json(), challenges=self._challenges, binding=self.binding,
                now=self.clock.seconds(),
            )
            if checked.pubkey != user:
                raise Nip46Rejected("the remote signer signed with another key")
            pubkey = checked.pubkey
        except Nip46Error as e:
            error = e
        except CancelledError:
            error = Nip46Error("the login was cancelled")
        except Exception as e:  # an Unauthorized from verify_login_event, or a bug
            message = getattr(e, "message", None)
            if message is None:
                self.log.failure("NIP-46 login {id} failed", Failure(), id=attempt.id)  # type: ignore[no-untyped-call]
                message = "the remote-signer login failed"
            error = Nip46Rejected(message)
        finally:
            client.close()
            await self._release(added)
        attempt._end(self.clock.seconds(), pubkey, error)
        self.log.info(
            "NIP-46 login {id}: {outcome}",
            id=attempt.id,
            outcome=f"signed in {pubkey}" if pubkey else f"failed ({error})",
        )

    async def _reach(self, relays: tuple[str, ...]) -> None:
        """Return once one of ``relays`` is connected; raise :class:`Nip46Error` saying why
        when every one of them failed its first connection attempt."""
        waits = [Deferred.fromCoroutine(self.pool.wait_open(r, self.timeout)) for r in relays]
        try:
            result = await DeferredList(waits, fireOnOneCallback=True, consumeErrors=True)
        finally:
            for d in waits:
                d.cancel()
        if isinstance(result, tuple):  # (None, index): one relay is open
            return
        reasons = []
        for ok, value in result:
            if not ok and value.check(RelayUnreachable, RelayTimeout):
                reasons.append(str(value.value))
            elif not ok:
                value.raiseException()
        raise Nip46Error("cannot reach the remote signer's relays: " + "; ".join(reasons))

    async def _release(self, relays: list[str]) -> None:
        remove = getattr(self.pool, "remove_relay", None)
        for r in relays:
            left = self._relay_users.get(r, 1) - 1
            if left > 0:
                self._relay_users[r] = left
                continue
            self._relay_users.pop(r, None)
            if remove is not None:
                try:
                    await remove(r)
                except Exception:
                    self.log.failure("dropping bunker relay {relay} failed", relay=r)

    async def stop(self) -> None:
        """Cancel what still runs (service stop)."""
        for d in list(self._running):
            d.cancel()
