"""Query-string arguments read by every app: absent, empty, good and bad values."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tgateway.errors import BadRequest
from tgateway.http.query import query_int, query_text


def request(**args: bytes) -> DummyRequest:
    r = DummyRequest([b""])
    r.args = {k.encode(): [v] for k, v in args.items()}
    return r


class QueryTests(SynchronousTestCase):
    def test_int_within_bounds_default_when_absent_or_empty(self) -> None:
        self.assertEqual(query_int(request(n=b"7"), "n", 0, 10), 7)
        self.assertIsNone(query_int(request(), "n", 0, 10))
        self.assertEqual(query_int(request(), "n", 0, 10, 3), 3)
        self.assertEqual(query_int(request(n=b""), "n", 0, 10, 3), 3)

    def test_bad_ints_name_the_argument(self) -> None:
        for raw, message in ((b"x", "n must be a whole number"), (b"1.5", "n must be a whole number"),
                             ("\u0663".encode(), "n must be a whole number"),  # Arabic-Indic 3
                             (b"\xff", "n must be a whole number"),
                             (b"11", "n must be between 0 and 10"),
                             (b"-1", "n must be between 0 and 10")):
            with self.assertRaises(BadRequest) as cm:
                query_int(request(n=raw), "n", 0, 10)
            self.assertEqual((cm.exception.message, cm.exception.code), (message, "invalid_field"))

    def test_text_is_utf8(self) -> None:
        self.assertEqual(query_text(request(q="é".encode()), "q"), "é")
        self.assertIsNone(query_text(request(), "q"))
        with self.assertRaises(BadRequest) as cm:
            query_text(request(q=b"\xff"), "q")
        self.assertEqual(cm.exception.message, "q must be UTF-8 text")
