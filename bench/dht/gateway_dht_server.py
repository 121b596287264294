"""The gateway's DHT service alone on 127.0.0.1:PORT for the benchmark: ``build_dht`` as
``twistd tgateway`` builds it (DhtService -> DhtProtocol -> DhtNode) on the epoll reactor, with no
bootstrap nodes and a throw-away state folder. Prints one JSON line when ready; on SIGTERM prints
the node's status to stderr and exits.

``--rate-limit R`` sets ``dht.query_rate_limit`` (default 0: off, as bittorrent-dht has none and
the load generator sends everything from 127.0.0.1). ``--profile FILE`` writes a cProfile dump.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402

from tgateway.config import DhtConfig  # noqa: E402
from tgateway.dht.service import build_dht  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int, nargs="?", default=0)
    ap.add_argument("--rate-limit", type=float, default=0.0)
    ap.add_argument("--profile", default="")
    args = ap.parse_args()
    config = DhtConfig(
        host="127.0.0.1",
        port=args.port,
        bootstrap_nodes=(),
        query_rate_limit=args.rate_limit,
        query_burst=1000,
    )
    state = tempfile.TemporaryDirectory(prefix="dht-bench-")
    svc = build_dht(config, state.name, reactor, random.Random(), 6881)
    svc.startService()
    print(json.dumps({"ready": True, "port": svc.ports[0], "id": svc.node_id.hex()}), flush=True)  # type: ignore[union-attr]
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()

    def stop(*_: object) -> None:
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reactor.run()
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)
    status = svc.status()
    svc.stopService()
    state.cleanup()
    print(json.dumps(status["families"][0]), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
