"""uTP (BEP 29): BitTorrent's stream transport over UDP, for the peer.

:mod:`.wire` is the packet codec, :mod:`.ledbat` the congestion control, :mod:`.core` one
connection's state machine (its sending and receiving halves in :mod:`.sending` and
:mod:`.receiving`) and :mod:`.mux` the demultiplexer of one UDP port (all sans I/O, with ``now``
passed in); :mod:`.udp` is the Twisted adapter that makes each connection a stream
transport for the same peer-wire protocol as TCP.
"""
