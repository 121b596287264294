"""Bootstrap node entries (:mod:`tgateway.dht.bootstrap`)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tgateway.dht.bootstrap import parse_host_port


class HostPortTests(SynchronousTestCase):
    def test_parse_host_port(self) -> None:
        self.assertEqual(
            parse_host_port("router.bittorrent.com:6881"), ("router.bittorrent.com", 6881)
        )
        self.assertEqual(parse_host_port("[::1]:7"), ("::1", 7))
        self.assertEqual(parse_host_port("1.2.3.4"), ("1.2.3.4", 6881))
        for bad in ("x:0", ":5", "x:70000", "x:y"):
            self.assertRaises(ValueError, parse_host_port, bad)
