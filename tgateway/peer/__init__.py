"""The gateway's BitTorrent peer: it seeds every stored file (BEP 3, 6, 9, 10)."""
