"""The gateway API and the Blossom server as a Tor v3 onion service (``tor`` section)."""
