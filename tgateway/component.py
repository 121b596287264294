"""The one shape of every component, and what components hand each other.

Each component package has ``service.py`` with ``build(section, deps) -> Component``: ``section``
is its part of the configuration, ``deps`` (:class:`Deps`) what ``tap`` and the components built
before it provide. The :class:`Component` it returns says everything ``tap`` needs to wire it:

- ``services``: added to the service tree in build order (and stopped in reverse);
- ``sites``: the HTTP ports it serves; ``mounts``: resources it puts on a site (its own or
  another component's: the tracker's ``/announce`` on the gateway port);
- ``status()``: its part of ``GET /api/health`` (None: nothing to report);
- ``metrics``: its Prometheus collectors (``tap`` registers them in ``Gateway.metrics``);
- ``on_stored`` / ``on_deleted``: its subscriptions to the content store's events (``tap``
  subscribes them; no component subscribes itself);
- ``provides``: what later components may use (:class:`Provided`), typed by the narrow face they
  use; ``part``: the built object itself, for inspection (:class:`Components`).

``makeService`` returns a :class:`GatewayService` (the ordered stop) whose ``.gateway`` is the
:class:`Gateway`: what was built, for inspection.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from prometheus_client.registry import Collector, CollectorRegistry
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFromThreads,
    IReactorProcess,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    IReactorUDP,
)
from twisted.logger import Logger
from twisted.web.resource import IResource

from tgateway.config import Config
from tgateway.links import Links
from tgateway.storage.api import ContentStore, Db, DeletedCallback, StoredCallback

if TYPE_CHECKING:
    from tgateway.admin.routes import AdminApi
    from tgateway.blocklist import BlockList
    from tgateway.blossom.server import BlossomServer
    from tgateway.dht.service import DhtService
    from tgateway.http.auth import Authenticator
    from tgateway.http.openapi import Route
    from tgateway.http.root import MountRoot
    from tgateway.http.site import StreamingSite
    from tgateway.nostr.service import NostrService
    from tgateway.peer.service import PeerService
    from tgateway.storage.policy import Policy
    from tgateway.storage.service import Storage
    from tgateway.tor.service import TorOnion
    from tgateway.tracker.core import LocalPeers
    from tgateway.tracker.service import Tracker
    from tgateway.transcode.api import Transcoding, VideoListener
    from tgateway.transcode.service import Transcoder
    from tgateway.uploads import Uploads
    from tgateway.web.service import GatewayWeb

__all__ = ["Component", "Components", "Deps", "Gateway", "GatewayService", "IGatewayReactor",
           "Mount", "Provided", "Site", "SiteName", "Status"]

log = Logger()

T = TypeVar("T")
Status = dict[str, Any]  # a JSON object
SiteName = Literal["gateway", "blossom"]


class IGatewayReactor(IReactorTime, IReactorTCP, IReactorUDP, IReactorCore, IReactorProcess,
                      IReactorThreads, IReactorFromThreads):
    """What the components need of the reactor, together: the clock, TCP and UDP listeners,
    name resolution, FFmpeg processes, threads calling back."""


@dataclass(frozen=True)
class Site:
    """An HTTP port a component serves; other components' mounts go on ``root``."""

    name: SiteName
    site: StreamingSite
    root: MountRoot


@dataclass(frozen=True)
class Mount:
    """A resource on a site at ``path``.

    ``whole_path``: a Klein app whose routes carry the full path; otherwise the resource sees
    the rest of the path after ``path``. ``when``: only requests whose path segments (all of
    them, empty ones dropped) satisfy it; the others go on to a shorter mount, or the site's
    default. A mount on a site that does not run (its component is off) is left out.
    ``routes``: what a resource that is not a Klein app serves, for the port's OpenAPI document
    (a Klein app's routes carry their own descriptions: :mod:`tgateway.http.openapi`)."""

    site: SiteName
    path: str
    resource: IResource
    whole_path: bool = False
    when: Callable[[Sequence[bytes]], bool] | None = None
    routes: Sequence[Route] = ()


@dataclass(frozen=True, kw_only=True)
class Provided:
    """What components provide to the ones built after them; each field is set by one component
    and typed by the face the others use."""

    store: ContentStore | None = None  # storage
    db: Db | None = None  # storage
    uploads: Uploads | None = None  # storage: the one upload handler
    blocks: BlockList | None = None  # storage: tombstoned files and banned keys, read from memory
    policy: Policy | None = None  # storage: the block list and users' limits, for the admin to change
    local_peers: LocalPeers | None = None  # tracker: lists the gateway's own peer
    dht: DhtService | None = None  # dht: its port is told to peers (BEP 5 PORT)
    nostr: NostrService | None = None  # nostr: identity, NIP-35 announcements, relay pool
    videos: VideoListener | None = None  # nostr: publishes NIP-71 events of probed videos
    transcoding: Transcoding | None = None  # transcode: jobs for the stream routes, FFmpeg
    authenticator: Authenticator | None = None  # gateway: sessions and NIP-98


@dataclass(frozen=True, kw_only=True)
class Deps(Provided):
    """What a component's ``build`` gets: the configuration, the reactor, randomness, the public
    links, every component built (:attr:`components`: the list ``tap`` fills as it builds, so
    read it when serving, not while building), and what earlier components provide."""

    config: Config
    reactor: IGatewayReactor
    rng: random.Random
    links: Links
    components: Sequence[Component[Any]]
    # the process's metrics registry (tgateway.metrics.Registry); tap registers every
    # component's ``metrics`` in it, the health component serves it at /metrics
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)

    def adding(self, provided: Provided) -> Deps:
        """These deps with what a component provides; a face provided twice is a wiring error."""
        new = {f.name: v for f in fields(Provided) if (v := getattr(provided, f.name)) is not None}
        twice = sorted(name for name in new if getattr(self, name) is not None)
        if twice:
            raise RuntimeError(f"provided twice: {', '.join(twice)}")
        return replace(self, **new)


@dataclass(frozen=True, kw_only=True)
class Component(Generic[T]):
    """A built component (see the module docstring)."""

    name: str
    part: T
    services: Sequence[IService] = ()
    sites: Sequence[Site] = ()
    mounts: Sequence[Mount] = ()
    report: Callable[[], Status | Awaitable[Status]] | None = None
    metrics: Sequence[Collector] = ()
    on_stored: StoredCallback | None = None
    on_deleted: DeletedCallback | None = None
    provides: Provided = field(default_factory=Provided)

    async def status(self) -> Status | None:
        """Its part of ``GET /api/health``; None when it has nothing to report."""
        if self.report is None:
            return None
        result = self.report()
        if inspect.isawaitable(result):
            return await result
        return cast(Status, result)


class Components:
    """The components built, in build order; each one's built object by name, for inspection
    (tests, the admin): ``components.tracker`` is the :class:`~tgateway.tracker.service.Tracker`,
    or None when it does not run."""

    def __init__(self, built: Sequence[Component[Any]]) -> None:
        self._built = built

    def __iter__(self) -> Iterator[Component[Any]]:
        return iter(self._built)

    def named(self, name: str) -> Component[Any] | None:
        return next((c for c in self._built if c.name == name), None)

    def _part(self, name: str) -> Any:
        c = self.named(name)
        return c.part if c is not None else None

    @property
    def storage(self) -> Storage | None:
        return cast("Storage | None", self._part("storage"))

    @property
    def tracker(self) -> Tracker | None:
        return cast("Tracker | None", self._part("tracker"))

    @property
    def dht(self) -> DhtService | None:
        return cast("DhtService | None", self._part("dht"))

    @property
    def peer(self) -> PeerService | None:
        return cast("PeerService | None", self._part("peer"))

    @property
    def nostr(self) -> NostrService | None:
        return cast("NostrService | None", self._part("nostr"))

    @property
    def transcode(self) -> Transcoder | None:
        return cast("Transcoder | None", self._part("transcode"))

    @property
    def gateway(self) -> GatewayWeb | None:
        return cast("GatewayWeb | None", self._part("gateway"))

    @property
    def admin(self) -> AdminApi | None:
        return cast("AdminApi | None", self._part("admin"))

    @property
    def blossom(self) -> BlossomServer | None:
        return cast("BlossomServer | None", self._part("blossom"))

    @property
    def tor(self) -> TorOnion | None:
        return cast("TorOnion | None", self._part("tor"))


class GatewayService(MultiService):
    """The top of the tree: children start in the order they were added and stop in reverse,
    one after the other, so that every component has finished with the content store and the
    database (a transcode storing its outputs, an outbox write) before the storage closes.
    Twisted's MultiService stops them all at once."""

    _stopped: Deferred[None] | None = None

    def __init__(self, gateway: Gateway | None = None) -> None:
        super().__init__()
        self.gateway = gateway  # what was built, for inspection

    def startService(self) -> None:
        self._stopped = None
        super().startService()

    def stopService(self) -> Deferred[None]:
        """Stop once; a second call waits for the same stop."""
        if self._stopped is None:
            Service.stopService(self)
            self._stopped = Deferred.fromCoroutine(self._stop_in_order())
        waiter: Deferred[None] = Deferred()
        self._stopped.addBoth(lambda r: (waiter.callback(None), r)[1])
        return waiter

    async def _stop_in_order(self) -> None:
        for service in reversed(list(self)):
            try:
                await maybeDeferred(service.stopService)
            except Exception:
                log.failure("stopping {name} failed", name=service.name)


@dataclass(frozen=True)
class Gateway:
    """What makeService built; kept on the returned service as ``.gateway`` for inspection."""

    config: Config
    deps: Deps  # what the components provided: ``deps.store``, ``deps.uploads`` ...
    components: Components  # ``components.tracker`` ...
    sites: dict[SiteName, StreamingSite]
    metrics: CollectorRegistry  # every component's collectors

    @property
    def store(self) -> ContentStore | None:
        return self.deps.store

    @property
    def db(self) -> Db | None:
        return self.deps.db

    @property
    def uploads(self) -> Uploads | None:
        return self.deps.uploads

    @property
    def links(self) -> Links:
        return self.deps.links
