"""``twistd tgateway``: the service tree built from the configuration (the command line and the
configuration it makes: :mod:`tgateway.options`).

The only module that knows every component. :data:`COMPONENTS` lists them in build order with the
modes that run them; :func:`makeService` builds each with its package's ``service.build(section,
deps)`` (:mod:`tgateway.component`), subscribes them to the content store's events, mounts their
resources on the sites and adds their services. Nothing listens until the tree starts. Storage
starts first and stops last.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from prometheus_client import ProcessCollector
from twisted.application.service import MultiService
from twisted.logger import Logger

from tgateway import __version__
from tgateway.component import Component, Components, Deps, Gateway, GatewayService
from tgateway.config import MODES, Config
from tgateway.links import Links
from tgateway.metrics import Registry
from tgateway.options import Options

__all__ = ["COMPONENTS", "Options", "Spec", "components_for", "makeService", "specs_for"]

log = Logger()

SERVING = frozenset({"unified", "gateway-only"})
BLOBS = frozenset({"unified", "blossom-only"})


@dataclass(frozen=True)
class Spec:
    """A component: ``<module>.build`` gets ``config.<section>``; ``switch``: the section's
    ``enabled: false`` leaves it out."""

    name: str
    module: str
    section: str
    modes: frozenset[str]
    switch: bool = True


# In build order: each component may use what those above it provide (tgateway.component.Deps).
# The one list of which mode runs what; a new component is one line.
COMPONENTS = (
    Spec("storage", "tgateway.storage.service", "storage", SERVING | BLOBS),
    Spec("tracker", "tgateway.tracker.service", "tracker", SERVING),
    Spec("dht", "tgateway.dht.service", "dht", frozenset({"unified", "dht-only"})),
    Spec("peer", "tgateway.peer.service", "peer", SERVING),
    Spec("nostr", "tgateway.nostr.service", "nostr", SERVING),
    Spec("transcode", "tgateway.transcode.service", "transcoding", SERVING, switch=False),
    Spec("gateway", "tgateway.web.service", "gateway", SERVING),
    # health: after the gateway, whose site and authenticator it uses; it reads every component
    Spec("health", "tgateway.health.service", "health", SERVING, switch=False),
    Spec("admin", "tgateway.admin.service", "admin", SERVING),  # the gateway's site and auth
    Spec("retention", "tgateway.retention.service", "admin", SERVING | BLOBS, switch=False),
    Spec("blossom", "tgateway.blossom.service", "blossom_server", BLOBS),
    # last: it publishes the sites built above, and starts once they listen (tor.enabled: false by default)
    Spec("tor", "tgateway.tor.service", "tor", SERVING | BLOBS),
)
assert all(spec.modes <= set(MODES) for spec in COMPONENTS)


def specs_for(config: Config) -> list[Spec]:
    """The components this configuration runs, in build order."""
    return [s for s in COMPONENTS if config.mode in s.modes
            and (not s.switch or getattr(getattr(config, s.section), "enabled", True))]


def components_for(config: Config) -> frozenset[str]:
    return frozenset(s.name for s in specs_for(config))


def links_for(config: Config, names: frozenset[str]) -> Links:
    tracker_urls: tuple[str, ...] = ()
    if "tracker" in names:
        from tgateway.tracker.service import announce_urls

        tracker_urls = tuple(announce_urls(config))
    blossom = config.blossom_server.base_url() if "blossom" in names else None
    return Links(base_url=config.gateway.base_url(), tracker_urls=tracker_urls, blossom_url=blossom)


def makeService(options: Options | dict[str, Any], reactor: Any = None) -> MultiService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    config: Config = options.config if isinstance(options, Options) else options["config"]
    specs = specs_for(config)
    os.makedirs(config.data_dir, exist_ok=True)
    built: list[Component[Any]] = []
    metrics = Registry()
    ProcessCollector(registry=metrics)  # process_cpu_seconds_total, memory, open fds
    deps = Deps(config=config, reactor=reactor, rng=random.Random(int.from_bytes(os.urandom(16), "big")),
                links=links_for(config, frozenset(s.name for s in specs)), components=built,
                metrics=metrics)
    for spec in specs:
        component = import_module(spec.module).build(getattr(config, spec.section), deps)
        built.append(component)
        deps = deps.adding(component.provides)

    sites = {site.name: site for c in built for site in c.sites}
    top = GatewayService(Gateway(config, deps, Components(built),
                                 {name: site.site for name, site in sites.items()}, metrics))
    for c in built:
        for service in c.services:
            service.setServiceParent(top)
        for collector in c.metrics:
            metrics.register(collector)
        for m in c.mounts:
            if m.site in sites:  # else the component serving that site does not run
                sites[m.site].root.mount(m.path, m.resource, whole_path=m.whole_path, when=m.when,
                                         routes=m.routes)
        if deps.store is not None and c.on_stored is not None:
            deps.store.subscribe_stored(c.on_stored)
        if deps.store is not None and c.on_deleted is not None:
            deps.store.subscribe_deleted(c.on_deleted)
    log.info("tgateway {version}: mode {mode}, components {components}",
             version=__version__, mode=config.mode, components=[c.name for c in built])
    return top

