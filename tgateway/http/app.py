"""A Klein app as every face of the gateway builds one: the path converters registered (before
any route is declared: werkzeug compiles a rule when it is added), the JSON error handlers
installed, and each request told its route (``request.route``: the rule, for the HTTP metrics,
:mod:`tgateway.http.stats`)."""

from __future__ import annotations

from typing import Any

from klein import Klein

from .converters import CONVERTERS
from .errors import Decorate, install_error_handlers
from .openapi import GATEWAY_SCHEMES, described


class _App(Klein):
    """Klein that sets ``request.route`` to the matched rule before the handler runs."""

    _rules: dict[str, str] | None = None

    def execute_endpoint(self, endpoint: str, request: Any, *args: Any, **kwargs: Any) -> Any:
        rules = self._rules
        if rules is None or endpoint not in rules:
            # bound copies (Klein.__get__) share the url map: rebuilt once per copy
            rules = self._rules = {r.endpoint: r.rule for r in self.url_map.iter_rules()}
        try:
            request.route = rules.get(endpoint, endpoint)
        except AttributeError:
            pass
        return super().execute_endpoint(endpoint, request, *args, **kwargs)


def new_app(*, decorate: Decorate | None = None, not_found: str = "no such route",
            schemes: tuple[str, ...] = GATEWAY_SCHEMES) -> Klein:
    """A Klein app with the ``sha256``, ``info_hash``, ``pubkey`` and ``blob`` converters and
    the JSON error handlers (see :func:`tgateway.http.errors.install_error_handlers`).
    ``schemes``: the security schemes its authorized routes accept, for the port's OpenAPI
    document (:mod:`tgateway.http.openapi`: the gateway's session and NIP-98, or Blossom's).
    Its handlers see the matched rule in ``request.route`` (the HTTP metrics' route label)."""
    app = _App()
    app.url_map.converters.update(CONVERTERS)
    install_error_handlers(app, decorate=decorate, not_found=not_found)
    described(app).schemes = schemes
    return app


__all__ = ["new_app"]
