"""The onion service's pure parts, the links that carry its address, and the tor config checks."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from tests.test_metainfo import stored
from tgateway import bencode
from tgateway.blossom.descriptor import descriptor
from tgateway.config import ConfigError, parse_config
from tgateway.links import Links, Origins
from tgateway.nostr.announce import torrent_info_for
from tgateway.nostr.nip35 import torrent_event_template
from tgateway.tor.onion import (
    KEY_HEADER,
    OnionError,
    add_onion_command,
    decode_key_file,
    encode_key_file,
    onion_url,
    parse_add_onion,
    target,
    torrc_lines,
)

SID = "p5bii6g5fe47t2z6yjpw53gb3wuh2t4i45hsmyne7b3qqsfcqshfxjyd"
KEY = "ED25519-V3:" + base64.b64encode(bytes(range(64))).decode()


def test_the_key_file_is_tors_own_format_and_round_trips() -> None:
    data = encode_key_file(KEY)
    assert data == KEY_HEADER + bytes(range(64)) and len(KEY_HEADER) == 32
    assert decode_key_file(data) == KEY
    for bad in (b"", data[:-1], b"x" * 96, data + b"\0"):
        with pytest.raises(OnionError):
            decode_key_file(bad)
    for bad_key in ("RSA1024:abcd", "ED25519-V3:!!", "ED25519-V3:" + base64.b64encode(b"short").decode()):
        with pytest.raises(OnionError):
            encode_key_file(bad_key)


def test_add_onion_new_then_with_the_kept_key() -> None:
    ports = [(80, "127.0.0.1:9877"), (8082, "127.0.0.1:8082")]
    assert add_onion_command(None, ports) == \
        "ADD_ONION NEW:ED25519-V3 Port=80,127.0.0.1:9877 Port=8082,127.0.0.1:8082"
    assert add_onion_command(KEY, ports[:1]) == f"ADD_ONION {KEY} Flags=DiscardPK Port=80,127.0.0.1:9877"
    reply = parse_add_onion(f"ServiceID={SID}\nPrivateKey={KEY}", new_key=True)
    assert (reply.address, reply.private_key) == (f"{SID}.onion", KEY)
    assert parse_add_onion(f"ServiceID={SID}", new_key=False).private_key is None
    for bad in ("ServiceID=abc", f"ServiceID={SID}", "", f"ServiceID={SID}\nPrivateKey=RSA1024:x"):
        with pytest.raises(OnionError):
            parse_add_onion(bad, new_key=True)


def test_targets_urls_and_torrc() -> None:
    assert target("0.0.0.0", 9877) == "127.0.0.1:9877"
    assert target("", 1) == "127.0.0.1:1"
    assert target("::", 2) == "[::1]:2" and target("::1", 3) == "[::1]:3"
    assert target("10.0.0.5", 4) == "10.0.0.5:4"
    assert onion_url(f"{SID}.onion", 80) == f"http://{SID}.onion"
    assert onion_url(f"{SID}.onion", 8082) == f"http://{SID}.onion:8082"
    lines = torrc_lines(data_directory="/d", control_socket="/d/control", owner_pid=7,
                        extra=["DisableNetwork 1"])
    assert lines[-2:] == ["SocksPort 0", "DisableNetwork 1"]
    assert "ControlPort unix:/d/control" in lines and "__OwningControllerProcess 7" in lines
    assert "SocksPort 0" not in torrc_lines(data_directory="/d", control_socket="/c", owner_pid=1,
                                            extra=["SocksPort 9150"])


def _links() -> Links:
    return Links(base_url="http://gw", tracker_urls=("http://gw/announce",), blossom_url="http://bl")


def test_links_carry_the_onion_only_while_it_is_up() -> None:
    links, f = _links(), stored()
    before = links.torrent_bytes(f)
    assert links.onion() is None and "onion_urls" not in links.describe(f)
    links.onion_origin.publish(Origins(gateway=f"http://{SID}.onion", blossom=f"http://{SID}.onion:8082",
                                       onion=f"{SID}.onion"))
    torrent = bencode.decode(links.torrent_bytes(f))
    assert torrent[b"url-list"] == [f"http://gw/api/webseed/{f.info_hash}/".encode(),
                                    f"http://{SID}.onion/api/webseed/{f.info_hash}/".encode()]
    assert f.info in links.torrent_bytes(f)  # the info dict, hence the info-hash, unchanged
    assert f"ws=http%3A%2F%2F{SID}.onion" in links.magnet(f)
    described = links.describe(f)
    assert described["onion_urls"]["blossom"] == f"http://{SID}.onion:8082/{f.sha256}"  # type: ignore[index]
    d = descriptor(f, base_url="http://bl", links=links, uploaded=0)
    assert d["onion_url"] == f"http://{SID}.onion:8082/{f.sha256}.mp4"
    assert ["fallback", d["onion_url"]] in d["nip94"]
    tags = torrent_event_template(torrent_info_for(f, None, links), 0).tags
    assert ("r", f"http://{SID}.onion/api/download/{f.sha256}") in tags
    assert ("webseed", f"http://{SID}.onion/api/webseed/{f.info_hash}/a%20b.mp4") in tags
    links.onion_origin.withdraw()
    assert links.torrent_bytes(f) == before


def test_tor_config_refuses_keys_that_would_do_nothing() -> None:
    assert parse_config({}).tor.enabled is False
    for tor, key in (({"control_port": "tcp:127.0.0.1"}, "tor.control_port"),
                     ({"control_port": "http://x"}, "tor.control_port"),
                     ({"control_port": "unix:/run/tor/control", "torrc": ["UseBridges 1"]}, "tor.torrc"),
                     ({"control_port": "tcp:127.0.0.1:9051", "binary": "/opt/tor"}, "tor.binary"),
                     ({"torrc": ["DataDirectory /x"]}, "tor.torrc[0]"),
                     ({"torrc": ["two\nlines"]}, "tor.torrc[0]"),
                     ({"gateway_port": 81, "blossom_port": 81}, "tor.blossom_port")):
        with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
            parse_config({"tor": tor})


def test_nip71_variants_name_the_onion_urls_as_fallbacks() -> None:
    from twisted.internet.task import Clock

    from tgateway.nostr.nip71 import VideoAnnouncer

    links, f = _links(), stored()
    announcer = VideoAnnouncer(sign=None, outbox=None, relays=(), clock=Clock(), links=links,  # type: ignore[arg-type]
                               store=None)  # type: ignore[arg-type]
    webseed = f"/api/webseed/{f.info_hash}/{quote(f.name, safe='')}"
    assert announcer._variant(f, 1280, 720, 1000, 2.0).fallbacks == [
        f"http://bl/{f.sha256}", f"http://gw{webseed}"]
    links.onion_origin.publish(Origins(gateway=f"http://{SID}.onion", blossom=f"http://{SID}.onion:8082",
                                       onion=f"{SID}.onion"))
    assert announcer._variant(f, 1280, 720, 1000, 2.0).fallbacks == [
        f"http://bl/{f.sha256}", f"http://gw{webseed}",
        f"http://{SID}.onion/api/stream/{f.sha256}", f"http://{SID}.onion:8082/{f.sha256}",
        f"http://{SID}.onion{webseed}"]
