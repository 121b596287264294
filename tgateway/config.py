"""Configuration: YAML parsed once into frozen, validated section objects.

Every section is a frozen dataclass whose defaults are the embedded defaults; ``load_config``
reads ``configs/config.yaml`` (or any file), rejects unknown keys and bad values with a
:class:`ConfigError` naming the key, the value and what was expected, and returns a
:class:`Config`. Sizes accept ``10GB``, ``100MB``, ``2MiB`` or plain bytes (decimal units are
powers of 1000, binary units powers of 1024); durations accept ``900s``, ``15m``, ``2h``, ``90d``
or plain seconds. Values and sections are parsed by :mod:`tgateway.configparse`; this module holds
the sections, their defaults and the checks across them.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tgateway.configchecks import cross_checks
from tgateway.configparse import (
    ConfigError,
    Duration,
    Size,
    is_ip_or_empty,
    is_network,
    is_power_of_two_16k,
    non_negative_check,
    parse_duration,
    parse_section,
    parse_size,
    port_check,
    positive_check,
    value_check,
)

__all__ = [
    "ConfigError",
    "Config",
    "load_config",
    "parse_config",
    "parse_size",
    "parse_duration",
    "Size",
    "Duration",
    "MODES",
]


def _base_url(public_url: str, host: str, port: int) -> str:
    """``public_url``, else ``http://<host>:<port>`` (a wildcard host as 127.0.0.1)."""
    if public_url:
        return public_url.rstrip("/")
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


MODES = ("unified", "gateway-only", "blossom-only", "dht-only")

# Keys that moved: a config still using the old place is told where the key went.
MOVED_KEYS = {"tracker.trusted_proxies": "trusted_proxies"}


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class GatewayConfig:
    enabled: bool = True
    port: int = field(default=9877, metadata=port_check())
    # Interface the HTTP API listens on.
    host: str = "0.0.0.0"
    max_upload_size: Size = field(default=Size(10 * 1000**3), metadata=positive_check())
    # Base URL written into torrents, magnets and responses; empty means http://<host>:<port>.
    public_url: str = ""
    # Uploads without a session or NIP-98 header are accepted (owned by nobody) when true.
    allow_anonymous_uploads: bool = True
    # Largest non-upload request body (JSON) accepted.
    max_request_body: Size = field(default=Size(1024 * 1024), metadata=positive_check())

    def base_url(self) -> str:
        return _base_url(self.public_url, self.host, self.port)


@dataclass(frozen=True)
class RateConfig:
    """Blossom's costly requests (uploads, media, mirrors, deletes, reports, lists) per client
    address: a token bucket of ``burst_size`` requests refilled at ``requests_per_minute``."""

    requests_per_minute: float = field(default=100.0, metadata=non_negative_check())
    burst_size: int = field(default=120, metadata=positive_check())


@dataclass(frozen=True)
class BlossomServerConfig:
    enabled: bool = True
    port: int = field(default=8082, metadata=port_check())
    host: str = "0.0.0.0"
    public_url: str = ""
    max_blob_size: Size = field(default=Size(100 * 1000**2), metadata=positive_check())
    rate_limit: RateConfig = RateConfig()
    # Verbs that need a kind 24242 authorization event (mirror and media follow upload).
    require_auth: tuple[str, ...] = field(
        default=("upload", "delete"),
        metadata=value_check(
            lambda v: set(v) <= {"upload", "list", "delete", "get", "mirror", "media", "report"},
            "a list of: upload, list, delete, get, mirror, media, report",
        ),
    )
    mirror_allow_private: bool = False
    # BUD-09 reports waiting for the operator; more are refused (507) until some are handled.
    max_open_reports: int = field(default=1000, metadata=positive_check())

    def base_url(self) -> str:
        return _base_url(self.public_url, self.host, self.port)


@dataclass(frozen=True)
class DhtConfig:
    enabled: bool = True
    port: int = field(default=6883, metadata=port_check())
    host: str = "0.0.0.0"
    bootstrap_nodes: tuple[str, ...] = (
        "router.bittorrent.com:6881",
        "dht.transmissionbt.com:6881",
        "router.utorrent.com:6881",
        "dht.libtorrent.org:25401",
    )
    announce_interval: Duration = field(default=Duration(900), metadata=positive_check())
    max_torrents: int = field(default=10000, metadata=positive_check())
    max_peers_per_torrent: int = field(default=200, metadata=positive_check())
    # A second node on this IPv6 address (BEP 32), e.g. "::"; empty: IPv4 only.
    host6: str = field(
        default="", metadata=value_check(lambda v: v == "" or ":" in v, 'an IPv6 address such as "::", or ""')
    )
    # Queries answered per second per source IP (token bucket); 0 disables the limit.
    query_rate_limit: float = field(default=50.0, metadata=non_negative_check())
    query_burst: int = field(default=100, metadata=positive_check())
    # Cap on our own queries waiting for an answer (lookups wait for a free slot).
    max_outstanding_queries: int = field(default=256, metadata=positive_check())


@dataclass(frozen=True)
class StorageConfig:
    blob_threshold: Size = field(default=Size(104857600), metadata=positive_check())
    chunk_size: Size = field(
        default=Size(2097152),
        metadata=value_check(is_power_of_two_16k, "a power of two of at least 16KiB (16384)"),
    )
    metadata_db: str = "./data/metadata.db"
    blob_storage: str = "./data/blobs"
    chunk_storage: str = "./data/chunks"
    # In-memory LRU cache of chunks for webseed, download and peer reads (bytes).
    chunk_cache_size: Size = field(default=Size(64 * 1024 * 1024), metadata=non_negative_check())


@dataclass(frozen=True)
class TrackerConfig:
    enabled: bool = True
    announce_interval: Duration = field(default=Duration(1800), metadata=positive_check())
    min_interval: Duration = field(default=Duration(900), metadata=positive_check())
    default_numwant: int = field(default=50, metadata=non_negative_check())
    max_numwant: int = field(default=100, metadata=non_negative_check())
    # Interface for the UDP tracker and the dedicated HTTP+WebSocket port ("::" for dual stack).
    host: str = "0.0.0.0"
    # BEP 15 UDP tracker port; 0 switches it off.
    udp_port: int = field(default=6969, metadata=port_check())
    # Dedicated HTTP+WebSocket tracker port, the first announce URL of every torrent and magnet
    # (the fast path; the gateway port serves /announce too); 0 switches it off.
    http_port: int = field(default=6969, metadata=port_check())
    # open: any info-hash; gateway-only: only info-hashes of stored files.
    mode: str = field(
        default="open",
        metadata=value_check(lambda v: v in ("open", "gateway-only"), "open or gateway-only"),
    )
    # Info-hashes (40 hex digits) refused by every front end.
    deny_list: tuple[str, ...] = field(
        default=(),
        metadata=value_check(
            lambda v: all(re.fullmatch(r"[0-9a-fA-F]{40}", h) for h in v),
            "a list of 40-hex-digit info-hashes",
        ),
    )
    # Answer a scrape without info_hash with every swarm.
    full_scrape: bool = False
    # Peers expire after their announce interval plus this grace period.
    peer_grace: Duration = field(default=Duration(300), metadata=non_negative_check())
    # Re-announce interval told to WebTorrent (WebSocket) clients.
    ws_announce_interval: Duration = field(default=Duration(120), metadata=positive_check())
    max_peers_per_torrent: int = field(default=5000, metadata=positive_check())
    max_torrents: int = field(default=100000, metadata=positive_check())


@dataclass(frozen=True)
class PeerConfig:
    """The gateway's own BitTorrent peer (it seeds every stored file)."""

    enabled: bool = True
    port: int = field(default=6881, metadata=port_check())
    # Interface to listen on; "::" listens on IPv6 (and IPv4, dual stack) and announces IPv6 too.
    host: str = "0.0.0.0"
    # Connections with a complete handshake; connections still handshaking (10 s at most) have
    # their own budget of max(8, max_connections // 4) (tgateway.peer.protocol).
    max_connections: int = field(default=200, metadata=positive_check())
    max_connections_per_ip: int = field(default=8, metadata=positive_check())
    # Unchoke slots (plus one optimistic unchoke rotating every 30 s).
    max_uploads: int = field(default=8, metadata=positive_check())
    # Upload cap over all peers, a size per second; 0: unlimited.
    upload_rate: Size = field(default=Size(0), metadata=non_negative_check())
    # Extra announce URLs (http://, https://, udp://) the gateway announces its peer to.
    trackers: tuple[str, ...] = field(
        default=(),
        metadata=value_check(
            lambda v: all(re.match(r"^(https?|udp)://[^/\s]+", u) for u in v),
            "a list of http://, https:// or udp:// announce URLs",
        ),
    )
    announce_interval: Duration = field(default=Duration(1800), metadata=positive_check())
    # Address listed for the gateway's peer by its own tracker; empty: peer.host when it is a
    # specific address, else the host of gateway.public_url when that is an IP address.
    external_ip: str = field(default="", metadata=value_check(
        lambda v: is_ip_or_empty(v, 4), "an IPv4 address or empty"))
    # The same for IPv6 (used when peer.host is an IPv6 address or "::").
    external_ip6: str = field(default="", metadata=value_check(
        lambda v: is_ip_or_empty(v, 6), "an IPv6 address or empty"))
    # uTP (BEP 29) on the UDP port of the same number as the TCP listener: Transmission and
    # WebTorrent try uTP first (Transmission 3 never falls back to TCP for tracker peers).
    utp: bool = True


@dataclass(frozen=True)
class NostrConfig:
    relays: tuple[str, ...] = ()
    video_relays: tuple[str, ...] = ()
    publish_nip35: bool = True
    publish_nip71: bool = True
    auto_publish: bool = True
    # NIP-71 as addressable events (kinds 34235/34236, ``d`` = the video's SHA-256): published
    # as soon as the video is probed, replaced once its renditions are ready. Off: regular kinds
    # 21/22, published once, when the video is ready.
    nip71_addressable: bool = False
    private_key: str = ""
    # Sign-in sessions (bearer tokens) last this long.
    session_ttl: Duration = field(default=Duration(7 * 86400), metadata=positive_check())
    # NIP-46 login: how long to wait for each answer of the user's remote signer.
    nip46_timeout: Duration = field(default=Duration(30), metadata=positive_check())
    # Let bunker:// URLs name relays on loopback or private addresses (tests, private networks).
    allow_private_bunker_relays: bool = False


@dataclass(frozen=True)
class TranscodeProfile:
    """One output rendition. ``height`` is the short side (720 gives 1280x720 or 720x1280);
    bitrates are bits per second (``2500k``, ``5M``)."""

    name: str = field(default="720p", metadata=value_check(
        lambda v: bool(re.match(r"^[A-Za-z0-9_-]{1,16}$", v)), "a short name such as 720p"))
    height: int = field(default=720, metadata=value_check(
        lambda v: 16 <= v <= 4320 and v % 2 == 0, "an even number of pixels from 16 to 4320"))
    video_bitrate: Size = field(default=Size(2_500_000), metadata=positive_check())
    audio_bitrate: Size = field(default=Size(128_000), metadata=positive_check())


DEFAULT_PROFILES = (
    TranscodeProfile("1080p", 1080, Size(5_000_000), Size(192_000)),
    TranscodeProfile("720p", 720, Size(2_500_000), Size(128_000)),
    TranscodeProfile("480p", 480, Size(1_000_000), Size(96_000)),
)


@dataclass(frozen=True)
class TranscodingConfig:
    enabled: bool = True
    concurrent_jobs: int = field(default=2, metadata=positive_check())
    work_dir: str = "./data/transcoded"
    auto_transcode: bool = True
    min_file_size: Size = field(default=Size(50 * 1000**2), metadata=non_negative_check())
    profiles: tuple[TranscodeProfile, ...] = DEFAULT_PROFILES
    # libx264 preset: ultrafast ... veryslow (faster = bigger files, less CPU).
    preset: str = field(default="veryfast", metadata=value_check(
        lambda v: v in ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                        "slow", "slower", "veryslow"), "an x264 preset such as veryfast"))
    hls_segment_duration: Duration = field(default=Duration(4), metadata=positive_check())


@dataclass(frozen=True)
class AdminConfig:
    enabled: bool = True
    pubkeys: tuple[str, ...] = ()
    # Retention (tgateway.retention): a run every cleanup_interval when auto_cleanup is on.
    auto_cleanup: bool = True
    cleanup_age: Duration = field(default=Duration(90 * 86400), metadata=positive_check())
    max_file_age: Duration = field(default=Duration(365 * 86400), metadata=positive_check())
    cleanup_interval: Duration = field(default=Duration(3600), metadata=positive_check())
    inactive_user_age: Duration = field(default=Duration(180 * 86400), metadata=positive_check())
    default_user_storage_limit: Size = field(default=Size(10 * 1000**3), metadata=non_negative_check())


@dataclass(frozen=True)
class TorConfig:
    """The gateway API and the Blossom server as a v3 onion service (the key in
    ``<data_dir>/tor/onion_service``), through a tor the gateway launches or one it attaches to."""

    enabled: bool = False
    # A running tor's control port, as a client endpoint ("unix:/run/tor/control",
    # "tcp:127.0.0.1:9051"); empty: the gateway launches its own tor.
    control_port: str = ""
    # The tor program launched when control_port is empty: a path, or a name found on PATH.
    binary: str = "tor"
    # Extra torrc lines for the launched tor ("UseBridges 1", "Bridge obfs4 ...", "DisableNetwork 1").
    torrc: tuple[str, ...] = ()
    # Ports of the onion address: the gateway API and the Blossom server (when they run).
    gateway_port: int = field(default=80, metadata=port_check(allow_zero=False))
    blossom_port: int = field(default=8082, metadata=port_check(allow_zero=False))


@dataclass(frozen=True)
class UploadRateConfig:
    requests_per_second: float = field(default=1.0, metadata=non_negative_check())
    burst_size: int = field(default=5, metadata=positive_check())
    max_file_size: Size = field(default=Size(3 * 1000**3), metadata=positive_check())


@dataclass(frozen=True)
class DownloadRateConfig:
    """Reads per client address (gateway downloads and webseed, Blossom GET/HEAD), per port."""

    requests_per_second: float = field(default=200.0, metadata=non_negative_check())
    burst_size: int = field(default=500, metadata=positive_check())


@dataclass(frozen=True)
class StreamRateConfig:
    requests_per_second: float = field(default=10.0, metadata=non_negative_check())
    burst_size: int = field(default=20, metadata=positive_check())
    max_concurrent: int = field(default=50, metadata=positive_check())


@dataclass(frozen=True)
class AuthRateConfig:
    login_attempts_per_minute: float = field(default=10.0, metadata=non_negative_check())
    burst_size: int = field(default=5, metadata=positive_check())


@dataclass(frozen=True)
class RateLimitingConfig:
    upload: UploadRateConfig = UploadRateConfig()
    download: DownloadRateConfig = DownloadRateConfig()
    stream: StreamRateConfig = StreamRateConfig()
    auth: AuthRateConfig = AuthRateConfig()


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus ``GET /metrics``: on its own port when ``port`` is set (no auth: bind it to a
    private interface), else on the gateway's port for admins only."""

    port: int = field(default=0, metadata=port_check())
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class AlertsConfig:
    """Thresholds of the alerts (``tgateway.health``); an alert is on while its condition
    holds."""

    disk_free_min: Size = field(default=Size(1000**3), metadata=non_negative_check())
    score_min: int = field(default=50, metadata=value_check(lambda v: 0 <= v <= 100,
                                                       "a score from 0 to 100"))
    outbox_backlog_max: int = field(default=1000, metadata=non_negative_check())
    failed_jobs_max: int = field(default=10, metadata=non_negative_check())


@dataclass(frozen=True)
class HistoryConfig:
    """The admin dashboard's charts (``GET /api/admin/history``): a few counters sampled every
    ``interval``, the last ``span`` of them kept in memory: ``span / interval`` points, from 1
    to :data:`~tgateway.configchecks.HISTORY_MAX_POINTS` (checked in :mod:`tgateway.configchecks`)."""

    interval: Duration = field(default=Duration(60), metadata=value_check(
        lambda v: v >= 1, "a duration of 1s or more"))
    span: Duration = field(default=Duration(24 * 3600), metadata=positive_check())


@dataclass(frozen=True)
class HealthConfig:
    # Scores and alerts are worked out this often (and on each GET /api/health).
    check_interval: Duration = field(default=Duration(15), metadata=positive_check())
    alerts: AlertsConfig = AlertsConfig()
    history: HistoryConfig = HistoryConfig()


@dataclass(frozen=True)
class Config:
    mode: str = field(
        default="unified", metadata=value_check(lambda v: v in MODES, "one of " + ", ".join(MODES))
    )
    # The data folder; --data-dir moves it and every path key that lies under it.
    data_dir: str = "./data"
    # Reverse proxies in front of the HTTP ports (gateway, Blossom, tracker): addresses or CIDR
    # blocks whose X-Forwarded-For names the client (rate limits, the tracker's peer address).
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata=value_check(lambda v: all(is_network(n) for n in v), "a list of IP addresses or CIDR blocks"),
    )
    gateway: GatewayConfig = GatewayConfig()
    blossom_server: BlossomServerConfig = BlossomServerConfig()
    dht: DhtConfig = DhtConfig()
    storage: StorageConfig = StorageConfig()
    tracker: TrackerConfig = TrackerConfig()
    peer: PeerConfig = PeerConfig()
    nostr: NostrConfig = NostrConfig()
    transcoding: TranscodingConfig = TranscodingConfig()
    admin: AdminConfig = AdminConfig()
    health: HealthConfig = HealthConfig()
    metrics: MetricsConfig = MetricsConfig()
    rate_limiting: RateLimitingConfig = RateLimitingConfig()
    tor: TorConfig = TorConfig()

    def with_data_dir(self, data_dir: str) -> Config:
        """Move the data folder: every path key under the old one moves with it."""
        old = Path(self.data_dir)

        def move(p: str) -> str:
            try:
                rel = Path(p).relative_to(old)
            except ValueError:
                return p
            return str(Path(data_dir) / rel)

        storage = dataclasses.replace(
            self.storage,
            metadata_db=move(self.storage.metadata_db),
            blob_storage=move(self.storage.blob_storage),
            chunk_storage=move(self.storage.chunk_storage),
        )
        transcoding = dataclasses.replace(self.transcoding, work_dir=move(self.transcoding.work_dir))
        return dataclasses.replace(
            self, data_dir=data_dir, storage=storage, transcoding=transcoding
        )

    def with_mode(self, mode: str) -> Config:
        if mode not in MODES:
            raise ConfigError(f"--mode: got {mode!r}, expected one of {', '.join(MODES)}")
        return dataclasses.replace(self, mode=mode)


# --------------------------------------------------------------------------- parsing


def parse_config(data: Any) -> Config:
    """Validate a mapping (parsed YAML) into a Config; raise ConfigError naming the bad key."""
    config = parse_section(Config, data, "", MOVED_KEYS)
    cross_checks(config)
    return typing.cast(Config, config)


def load_config(path: str | Path | None) -> Config:
    """Read a YAML file (or return the embedded defaults for None)."""
    if path is None:
        return parse_config({})
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    return parse_config(data)
