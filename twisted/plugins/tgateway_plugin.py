from twisted.application.service import ServiceMaker

tgateway = ServiceMaker(
    "tgateway",
    "tgateway.tap",
    "BitTorrent gateway: HTTP API, Blossom, tracker, DHT, peer, Nostr and transcoding",
    "tgateway",
)
