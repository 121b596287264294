"""``twistd tgateway``'s command line: ``--config``, ``--data-dir``, ``--mode`` and ``--version``,
and the configuration they make (:func:`build_config`). A bad configuration stops ``twistd`` here,
with one line naming the key, before the reactor starts. :mod:`tgateway.tap` builds the service
tree from it."""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.python import usage

from tgateway import __version__
from tgateway.config import Config, ConfigError, load_config

__all__ = ["DEFAULT_CONFIG", "Options", "build_config"]

DEFAULT_CONFIG = "configs/config.yaml"


class Options(usage.Options):
    synopsis = "[--config PATH] [--data-dir DIR] [--mode MODE]"
    longdesc = "Run the tgateway BitTorrent gateway (HTTP API, Blossom, tracker, DHT, ...)."
    optParameters = [
        ["config", "c", None, f"YAML configuration file (default: {DEFAULT_CONFIG} if present, "
                              "else the embedded defaults)"],
        ["data-dir", "d", None, "data folder (overrides data_dir; moves every path under it)"],
        ["mode", "m", None, "unified | gateway-only | blossom-only | dht-only (overrides mode)"],
    ]

    config: Config

    def opt_version(self) -> None:
        print(f"tgateway {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        try:
            self.config = build_config(self["config"], self["data-dir"], self["mode"])
        except ConfigError as e:
            # One line, no traceback, no usage text: the message names key, value, expectation.
            raise SystemExit(f"tgateway: configuration error: {e}") from None


def build_config(path: str | None, data_dir: str | None, mode: str | None) -> Config:
    """The configuration file (``configs/config.yaml`` when none is named and it exists, else
    the embedded defaults), then ``--data-dir`` and ``--mode`` over it."""
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    config = load_config(path)
    if data_dir:
        config = config.with_data_dir(data_dir)
    if mode:
        config = config.with_mode(mode)
    return config
