"""Run the tracker alone (dedicated HTTP+WS port, UDP port, gateway-style twisted.web Site).

    python bench/tracker/serve.py --udp 16969 --http 16970 --site 16971

Used by bench/tracker/run.py; also handy for poking at the tracker by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site

from tgateway.config import load_config
from tgateway.tracker.service import build_tracker


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--udp", type=int, default=0)
    ap.add_argument("--http", type=int, default=0)
    ap.add_argument("--site", type=int, default=0, help="twisted.web Site with the resource")
    ap.add_argument("--ready", help="file to write 'ready' into once listening")
    args = ap.parse_args()
    # The tracker section of configs/config.yaml as shipped (max_peers_per_torrent 5000,
    # max_torrents 100000 ...), on loopback and the ports given.
    shipped = load_config(str(Path(__file__).resolve().parents[2] / "configs" / "config.yaml")).tracker
    config = dataclasses.replace(shipped, host="127.0.0.1", udp_port=args.udp, http_port=args.http)
    tracker = build_tracker(config, f"http://127.0.0.1:{args.site or args.http}", reactor)
    tracker.services.startService()
    if args.site:
        root = Resource()
        root.putChild(b"announce", tracker.resource)
        root.putChild(b"scrape", tracker.resource)
        site = Site(root)
        site.noisy = False
        site.displayTracebacks = False
        site.log = lambda request: None  # no access log on the benchmark path
        serverFromString(reactor, f"tcp:{args.site}:interface=127.0.0.1").listen(site)
    if args.ready:
        reactor.callLater(0.2, lambda: open(args.ready, "w").write("ready\n"))
    reactor.addSystemEventTrigger("before", "shutdown", tracker.services.stopService)
    if os.environ.get("TRACKER_PEERS_REPORT"):
        reactor.addSystemEventTrigger(
            "before", "shutdown",
            lambda: print("peers", tracker.store.peer_count(), "swarms", tracker.store.swarm_count(),
                          file=sys.stderr),
        )
    reactor.run()


if __name__ == "__main__":
    main()
