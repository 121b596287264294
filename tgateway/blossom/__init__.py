"""The embedded Blossom server (BUD-01/02/04/06/08/09, BUD-11 authorization) on
``blossom_server.port``, serving the gateway's one content store."""
