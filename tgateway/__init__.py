"""tgateway: a BitTorrent gateway on Twisted."""

__version__ = "0.1.0"
