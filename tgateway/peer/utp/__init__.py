"""uTP (BEP 29): BitTorrent's stream transport over UDP, for the peer.

:mod:`.wire` is the packet codec, :mod:`.ledbat` the congestion control, :mod:`.core` one
connection's state machine and :mod:`.mux` the demultiplexer of one UDP port (all sans I/O, with
``now`` passed in); :mod:`.udp` is the Twisted adapter that makes each connection a stream
transport for the same peer-wire protocol as TCP.
"""
