"""What the tests and the benchmarks share: ports, the real clients and how to run them, servers,
and the gateway itself, in-process or as a ``twistd`` child.

- ``harness.ports``: free ports, waiting for a listener;
- ``harness.tools``: finding each client or tool (a missing one fails the test), node and Chromium;
- ``harness.procs``: running clients (blocking, long-lived ``ClientProcess``, on the reactor);
- ``harness.servers``: nostr-relay, opentracker, static pages for the browser;
- ``harness.netns``: a network namespace of the test's own;
- ``harness.daemons``: qBittorrent, Transmission and Deluge through their own interfaces;
- ``harness.gateway``: a gateway built in-process on the test's reactor;
- ``harness.twistd``: a gateway run as ``twistd -n tgateway`` in a child process.

It is a package of its own, outside ``tests/``, so that ``bench/`` uses it without importing the
tests.

Everything here is installed by ``scripts/install-test-deps`` (``make test`` runs it):

- node 20 with the npm clients in ``tests/clients/node_modules`` (webtorrent, bittorrent-tracker,
  bittorrent-dht, create-torrent, parse-torrent, nostr-tools, blossom-client-sdk, ws);
- Debian's ``/usr/bin/python3`` with ``libtorrent`` (python3-libtorrent imports only there, never in
  the project's virtualenv);
- ``aria2c``, ``ffmpeg``/``ffprobe``, ``curl``, ``nginx``, ``opentracker``, ``wrk``, ``prometheus``, ``tor``,
  ``systemd-analyze`` (systemd), ``openssl``;
- the BitTorrent daemons ``qbittorrent-nox``, ``transmission-daemon`` and ``deluged`` (with
  ``deluge-console``), driven through their own interfaces (``harness.daemons``);
- ``nostr-relay`` 1.14 in its own virtualenv, ``.tools/nostr-relay-venv``;
- Debian's ``chromium``, driven by Playwright for Python (the ``test`` extras): see
  ``harness.tools.chromium_browser`` (Playwright never downloads a browser here).

``NetworkNamespace`` gives a test addresses of its own (10.99.x) in a network namespace where
nothing reaches another host (root only): for clients that refuse loopback peers.

When a client is missing the test FAILS with a message naming the client and the command that
installs it. With ``TGATEWAY_ALLOW_MISSING_CLIENTS=1`` in the environment it is skipped instead, with
the same message as the reason. Nothing is skipped silently.

JavaScript: the npm clients are ES modules only (their ``exports`` have no ``require`` entry), so
test scripts are ``.mjs`` files in ``tests/clients/js/`` using ``import``; bare specifiers resolve
by walking up to ``tests/clients/node_modules``. ``NODE_PATH`` is also set, for CommonJS scripts.
A script reports results by printing JSON; ``run_node_json`` parses the last JSON line.

Blocking helpers (``run_node``, ``run``, ``ClientProcess.wait_for_json``) must not be called from
code running on a reactor that the client needs to talk to (it would deadlock): use
``run_deferred`` / ``run_node_deferred`` there, or start the client with ``ClientProcess`` (its
output is drained by threads) and wait with ``ClientProcess.json_deferred``.
"""
