"""libtorrent helper run with Debian's python3 (python3-libtorrent): download or seed.

    python3 lt_client.py leech MAGNET_OR_TORRENT SAVE_DIR PEER_HOST:PORT TIMEOUT
        -> prints {"ok", "seconds", "bytes", "name", "rate"} when the download is complete
    python3 lt_client.py seed TORRENT_FILE SAVE_DIR LISTEN_PORT
        -> prints {"listening": port} and seeds until killed
    python3 lt_client.py webseed TORRENT_FILE SAVE_DIR TIMEOUT
        -> downloads from the torrent's web seeds (BEP 19 url-list) alone, no peer; prints
           {"ok", "seconds", "bytes", "rate", "url_seed_errors"} (every url_seed_alert: an HTTP
           error such as 429 from the web seed)

No DHT, LSD, UPnP, NAT-PMP or uTP; loopback only. Encryption: ``LT_ENCRYPTION`` (on/off/forced). Leechers connect straight to the given peer.
"""

import json
import os
import sys
import time

import libtorrent as lt


def session(port: int = 0) -> "lt.session":
    s = lt.session({
        "listen_interfaces": f"127.0.0.1:{port}",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
        "allow_multiple_connections_per_ip": True,
        "connections_limit": 500,
        # The gateway speaks TCP only (no uTP).
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
    })
    # LT_ENCRYPTION: "on" (libtorrent's default: try MSE first, plaintext or RC4 stream), "off"
    # (plaintext handshakes only), "forced" (MSE with an RC4 stream only).
    mode = os.environ.get("LT_ENCRYPTION", "on")
    if mode == "off":
        s.apply_settings({"out_enc_policy": 2, "in_enc_policy": 2})
    elif mode == "forced":
        s.apply_settings({"out_enc_policy": 0, "in_enc_policy": 0, "allowed_enc_level": 2})
    return s


def leech(src: str, save: str, peer: str, timeout: float) -> None:
    s = session()
    if src.startswith("magnet:"):
        p = lt.parse_magnet_uri(src)
    else:
        p = lt.add_torrent_params()
        p.ti = lt.torrent_info(src)
    p.save_path = save
    h = s.add_torrent(p)
    host, port = peer.rsplit(":", 1)
    start = time.time()
    h.connect_peer((host, int(port)), 0)
    last_connect = start
    while True:
        st = h.status()
        if st.is_seeding or (st.has_metadata and st.state == lt.torrent_status.seeding):
            break
        if time.time() - start > timeout:
            print(json.dumps({"ok": False, "error": "timeout", "progress": st.progress,
                              "has_metadata": st.has_metadata, "peers": st.num_peers}))
            sys.exit(2)
        if st.num_peers == 0 and time.time() - last_connect > 2:
            h.connect_peer((host, int(port)), 0)
            last_connect = time.time()
        for a in s.pop_alerts():
            if a.category() & lt.alert.category_t.error_notification:
                print("alert:", a.message(), file=sys.stderr)
        time.sleep(0.05)
    dt = time.time() - start
    ti = h.torrent_file()
    print(json.dumps({"ok": True, "seconds": dt, "bytes": ti.total_size(), "name": ti.name(),
                      "rate": ti.total_size() / dt}))


def webseed(torrent: str, save: str, timeout: float) -> None:
    s = session()
    s.apply_settings({"alert_mask": s.get_settings()["alert_mask"]
                      | lt.alert.category_t.peer_notification})
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent)
    p.save_path = save
    h = s.add_torrent(p)
    errors = []
    start = time.time()
    while not h.status().is_seeding:
        if time.time() - start > timeout:
            st = h.status()
            print(json.dumps({"ok": False, "error": "timeout", "progress": st.progress,
                              "url_seed_errors": errors}))
            sys.exit(2)
        for a in s.pop_alerts():
            if isinstance(a, lt.url_seed_alert):
                errors.append(a.message())
        time.sleep(0.02)
    dt = time.time() - start
    for a in s.pop_alerts():
        if isinstance(a, lt.url_seed_alert):
            errors.append(a.message())
    size = h.torrent_file().total_size()
    print(json.dumps({"ok": True, "seconds": dt, "bytes": size, "rate": size / dt,
                      "url_seed_errors": errors}))


def seed(torrent: str, save: str, port: int) -> None:
    s = session(port)
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent)
    p.save_path = save
    p.flags |= lt.torrent_flags.seed_mode
    s.add_torrent(p)
    print(json.dumps({"listening": s.listen_port()}), flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "leech":
        leech(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    elif mode == "webseed":
        webseed(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        seed(sys.argv[2], sys.argv[3], int(sys.argv[4]))
