"""Nostr: events (NIP-01), keys (NIP-19), NIP-44 encryption, the relay pool and the outbox."""
