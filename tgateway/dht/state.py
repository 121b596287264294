"""The DHT's state on disk (``<data_dir>/dht/dht.json``): node ids, external addresses, routing
tables, so a restarted gateway rejoins at once with the same ids.

State file: ``node_id``/``external_ip`` for the IPv4 node, ``node_id6``/``external_ip6`` for the
IPv6 one (the IPv4 id when absent), ``nodes``: ``[id hex, ip, port]`` of both. An unreadable file
is logged and ignored (fresh ids); an id that does not match its saved external address (BEP 42)
is replaced.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from tgateway.dht import bep42
from tgateway.dht.bootstrap import is_ip

if TYPE_CHECKING:
    from tgateway.dht.node import DhtNode

__all__ = ["STATE_FILE", "NodeIds", "load_state", "save_state"]

STATE_FILE = "dht.json"

NodeIds = dict[bool, tuple[bytes, str | None]]  # ipv6? -> (node id, external address)

log = Logger()


def load_state(path: Path, rng: random.Random) -> tuple[NodeIds, list[tuple[bytes, str, int]]]:
    """Per family (ipv6: bool) the node id and external address; the saved nodes.

    State file: ``node_id``/``external_ip`` for the IPv4 node, ``node_id6``/``external_ip6``
    for the IPv6 one (the IPv4 id when absent), ``nodes``: ``[id hex, ip, port]`` of both.
    """
    data: dict[str, Any] = {}
    nodes: list[tuple[bytes, str, int]] = []
    try:
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
        for h, ip, port in data.get("nodes", []):
            nid = bytes.fromhex(h)
            if len(nid) == 20 and is_ip(ip) and 0 < int(port) < 65536:
                nodes.append((nid, ip, int(port)))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError):
        log.warn("ignoring unreadable DHT state {path}", path=str(path))
        data, nodes = {}, []
    ids: dict[bool, tuple[bytes, str | None]] = {}
    for ipv6, suffix in ((False, ""), (True, "6")):
        node_id: bytes | None = None
        try:
            raw = data.get("node_id" + suffix) or data.get("node_id")
            node_id = bytes.fromhex(raw) if isinstance(raw, str) else None
        except ValueError:
            node_id = None
        if node_id is not None and len(node_id) != 20:
            node_id = None
        external = data.get("external_ip" + suffix)
        if not (isinstance(external, str) and is_ip(external) and (":" in external) == ipv6):
            external = None
        if external and node_id and not bep42.id_matches_ip(node_id, external):
            node_id = None
        if node_id is None:
            node_id = (
                bep42.node_id_for_ip(external, rng) if external else rng.randbytes(20)
            )
        ids[ipv6] = (node_id, external)
    return ids, nodes


def save_state(path: Path, nodes: Sequence[DhtNode]) -> None:
    """Write the node ids, external addresses and routing tables of ``nodes`` (one per family)
    atomically (a temporary file, fsynced, then renamed); nothing when there is no node."""
    if not nodes:
        return
    saved: list[list[Any]] = []
    data: dict[str, Any] = {}
    for node in nodes:
        suffix = "6" if node.ipv6 else ""
        data["node_id" + suffix] = node.node_id.hex()
        data["external_ip" + suffix] = node.external_ip
        saved.extend([nid.hex(), ip, port] for nid, ip, port in node.export_nodes())
    data["nodes"] = saved
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
