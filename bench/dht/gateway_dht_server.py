"""The gateway's DHT node alone on 127.0.0.1:PORT for the benchmark (same code path as
``twistd tgateway``: DhtProtocol + DhtNode on the epoll reactor). Prints one JSON line when ready.

``--rate-limit R`` sets the per-IP query limit (default 0: off, as bittorrent-dht has none; the
load generator sends everything from 127.0.0.1). ``--profile FILE`` writes a cProfile dump on exit.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402

from tgateway.dht.node import DhtNode  # noqa: E402
from tgateway.dht.protocol import DhtProtocol  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int, nargs="?", default=0)
    ap.add_argument("--rate-limit", type=float, default=0.0)
    ap.add_argument("--profile", default="")
    args = ap.parse_args()
    rng = random.Random()
    proto = DhtProtocol(reactor)
    node = DhtNode(
        rng.randbytes(20),
        proto,
        rng,
        reactor.seconds(),
        query_rate=args.rate_limit,
        query_burst=1000,
    )
    proto.node = node
    port = reactor.listenUDP(args.port, proto, interface="127.0.0.1", maxPacketSize=8192)
    # Same receive buffer as the load generator's sockets and the node server's default-ish.
    port.socket.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4 << 20)
    print(
        json.dumps({"ready": True, "port": port.getHost().port, "id": node.node_id.hex()}),
        flush=True,
    )
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
    print(json.dumps({"stats": node.status(reactor.seconds())}), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
