"""A Klein app as every face of the gateway builds one: the path converters registered (before
any route is declared: werkzeug compiles a rule when it is added) and the JSON error handlers
installed."""

from __future__ import annotations

from klein import Klein

from .converters import CONVERTERS
from .errors import Decorate, install_error_handlers
from .openapi import GATEWAY_SCHEMES, described


def new_app(*, decorate: Decorate | None = None, not_found: str = "no such route",
            schemes: tuple[str, ...] = GATEWAY_SCHEMES) -> Klein:
    """A Klein app with the ``sha256``, ``info_hash``, ``pubkey`` and ``blob`` converters and
    the JSON error handlers (see :func:`tgateway.http.errors.install_error_handlers`).
    ``schemes``: the security schemes its authorized routes accept, for the port's OpenAPI
    document (:mod:`tgateway.http.openapi`: the gateway's session and NIP-98, or Blossom's)."""
    app = Klein()
    app.url_map.converters.update(CONVERTERS)
    install_error_handlers(app, decorate=decorate, not_found=not_found)
    described(app).schemes = schemes
    return app


__all__ = ["new_app"]
