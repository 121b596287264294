"""Memory of the swarm store: 100,000 peers across 10,000 torrents (10 per torrent).

    python bench/tracker/memory.py [PEERS] [TORRENTS]

Peers are IPv4 HTTP/UDP peers with distinct addresses (75% seeders, as the load generators use),
announced through ``MemorySwarmStore.announce`` exactly as the front ends do. Prints bytes per peer
from tracemalloc (Python objects only) and from the process's RSS growth.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import tracemalloc

from tgateway.tracker.core import EVENT_STARTED
from tgateway.tracker.memory import MemorySwarmStore


def rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    peers = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    torrents = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    rng = random.Random(1)
    hashes = [rng.randbytes(20) for _ in range(torrents)]
    lefts = [0 if rng.random() < 0.75 else 1000 for _ in range(peers)]
    def fill() -> MemorySwarmStore:
        store = MemorySwarmStore(rng, max_peers_per_torrent=100_000, max_torrents=1_000_000)
        for i in range(peers):
            # key and peer_id are fresh objects, as when they come off the wire
            key = (167772160 + i).to_bytes(4, "big") + (6881 + i % 1000).to_bytes(2, "big")
            peer_id = b"-TG0001-" + i.to_bytes(12, "big")
            store.announce(hashes[i % torrents], peer_id, key, lefts[i], EVENT_STARTED, 0, 0.0)
        assert store.peer_count() == peers and len(store.swarms) == torrents
        return store

    # RSS first (tracemalloc's own bookkeeping would inflate it), then tracemalloc on a second
    # store while the first stays alive.
    gc.collect()
    rss0 = rss()
    first = fill()
    gc.collect()
    grown = rss() - rss0
    tracemalloc.start()
    snap0 = tracemalloc.get_traced_memory()[0]
    second = fill()
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - snap0
    tracemalloc.stop()
    del first, second
    # tracemalloc counts what the store still holds after the loop: swarms, dicts, Peer
    # objects, keys and peer_ids (temporaries are freed).
    print(f"peers={peers} torrents={torrents} traced_bytes={traced} traced_per_peer={traced / peers:.0f} "
          f"rss_growth={grown} rss_per_peer={grown / peers:.0f}")
    print(f"RESULT tool=memory peers={peers} torrents={torrents} bytes_per_peer={traced / peers:.0f} "
          f"total_mib={traced / 2**20:.1f}")


if __name__ == "__main__":
    main()
