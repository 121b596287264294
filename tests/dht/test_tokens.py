"""Tokens of get_peers replies (:mod:`tgateway.dht.tokens`)."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from tgateway.dht.tokens import TOKEN_ROTATE, TokenManager


class TokenManagerTests(SynchronousTestCase):
    def test_token_manager(self) -> None:
        tm = TokenManager(random.Random(1), 0)
        tok = tm.token("1.2.3.4", 0)
        self.assertEqual(len(tok), 8)
        self.assertTrue(tm.valid(tok, "1.2.3.4", 1))
        self.assertFalse(tm.valid(tok, "1.2.3.5", 1))
        self.assertTrue(tm.valid(tok, "1.2.3.4", TOKEN_ROTATE + 1))
        self.assertFalse(tm.valid(tok, "1.2.3.4", 2 * TOKEN_ROTATE + 2))
