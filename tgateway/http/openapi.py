"""The OpenAPI 3.1 description of an HTTP port, generated from its route declarations.

A route is described where it is declared. A Klein route takes its description with it::

    @route(app, "/api/files/<sha256:sha>", methods=["GET"], op=Op(
        "A file's description", tags=("files",),
        replies={200: Reply("the file", json=FILE)}, errors={404: "no such file"}))
    async def metadata(self, request, sha): ...

    @authorized(app, "/api/users/me/stats", methods=["GET"], need=Need.USER, op=Op(...))

:func:`authorized` adds what its ``need`` says: the security requirements of the port's schemes
(``new_app(schemes=...)``: session bearer and NIP-98 on the gateway port, Blossom tokens on the
Blossom port), 401 and, for administrators, 403. The path's converters give the parameters and
their patterns (``sha256``, ``info_hash``, ``pubkey``: hex; ``blob``: ``<sha256>[.ext]``) and the
400/404 a malformed segment gets. A route that is not part of the API (a CORS preflight, the 404
of unknown paths) says so with ``op=hidden("why")``. A resource mounted on a site that is not a
Klein app (the tracker's ``/announce``) lists its :class:`Route` s on its ``Mount``.

:func:`document` walks a site's :class:`~tgateway.http.root.MountRoot` (its default app and every
mount) and builds the document from what it finds; :func:`undescribed` lists what it finds
without a description (a test fails on any). Every error has the one shape ``{"error",
"message"}`` (:data:`ERROR`); a rate-limited route's 429 carries ``Retry-After``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.web.resource import IResource, Resource

if TYPE_CHECKING:
    from klein import Klein

    from .auth import NeedOf
    from .root import MountRoot

Schema = dict[str, Any]
JSON = "application/json"

#: the one error shape of every route (``tgateway.http.errors``)
ERROR: Schema = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "stable machine code"},
        "message": {"type": "string", "description": "what went wrong, for people"},
    },
}
_ERROR_REF: Schema = {"$ref": "#/components/schemas/Error"}
HEX64 = "^[0-9a-fA-F]{64}$"
HEX40 = "^[0-9a-fA-F]{40}$"

#: what a path converter accepts, and the error a segment it refuses gets
_CONVERTERS: dict[str, tuple[Schema, int, str]] = {
    "sha256": ({"type": "string", "pattern": HEX64}, 400, "the sha256 is not 64 hex digits"),
    "info_hash": ({"type": "string", "pattern": HEX40}, 400,
                  "the info-hash is not 40 hex digits"),
    "pubkey": ({"type": "string", "pattern": HEX64}, 400, "the public key is not 64 hex digits"),
    "blob": ({"type": "string", "pattern": r"^[0-9a-fA-F]{64}(\.[A-Za-z0-9._-]{1,32})?$"}, 404,
             "not a blob address (<sha256>[.ext])"),
    "default": ({"type": "string", "pattern": "^[^/]+$"}, 404, ""),
    "path": ({"type": "string", "pattern": "^[^/]+$"}, 404, ""),
}
_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")

#: the security schemes a port's routes may name (``new_app(schemes=...)``)
SECURITY_SCHEMES: dict[str, Schema] = {
    "session": {
        "type": "http", "scheme": "bearer",
        "description": "Authorization: Bearer <token>, the token POST /api/auth/login answers",
    },
    "nip98": {
        "type": "http", "scheme": "Nostr",
        "description": "Authorization: Nostr <base64 of a kind 27235 event> (NIP-98): its u tag "
                       "is the request's URL on the public origin, its method tag the method, "
                       "created_at within a minute; a payload tag, when present, is the body's "
                       "SHA-256",
    },
    "blossom": {
        "type": "http", "scheme": "Nostr",
        "description": "Authorization: Nostr <base64 of a kind 24242 event> (BUD-11): a t tag "
                       "with the endpoint's verb (get, upload, list, delete, media, mirror), "
                       "an expiration tag in the future, x tags naming the blobs (needed for "
                       "upload and delete), server tags naming this server when present",
    },
}
GATEWAY_SCHEMES = ("session", "nip98")
BLOSSOM_SCHEMES = ("blossom",)


@dataclass(frozen=True)
class Param:
    """A query or header parameter. Path parameters come from the route's converters; a
    ``Param(name, "path", schema)`` narrows one to the values the route serves (a file name
    out of a fixed set)."""

    name: str
    where: str = "query"
    schema: Schema = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Body:
    """A request body: media type -> schema (``application/json``, ``multipart/form-data``,
    ``application/octet-stream`` for a raw body)."""

    content: Mapping[str, Schema]
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: the operation a response leads to, and where its parameters come from
    (``{"sha": "$response.body#/sha256"}``)."""

    operation: str
    parameters: Mapping[str, str]


@dataclass(frozen=True)
class Reply:
    """A response that is not an error. ``content``: media type -> schema (``json=`` for
    ``application/json``); none for a response without a body. ``headers``: name -> schema (the
    required ones are marked ``required`` in their schema dict as ``{"required": True, ...}``)."""

    description: str
    json: Schema | None = None
    content: Mapping[str, Schema] = field(default_factory=dict)
    headers: Mapping[str, Schema] = field(default_factory=dict)
    links: Mapping[str, Link] = field(default_factory=dict)


@dataclass(frozen=True)
class Op:
    """The description of one route (every method it declares).

    ``replies``: status -> :class:`Reply`; ``errors``: status -> when (each answered with
    :data:`ERROR`); ``limited``: a rate limit may answer 429 with ``Retry-After``; ``name``: the
    operationId (default: the handler's name, with the method when it takes several);
    ``hidden``: why the route is left out of the document (non-empty: not part of the API)."""

    summary: str
    tags: Sequence[str] = ()
    description: str = ""
    params: Sequence[Param] = ()
    body: Body | None = None
    replies: Mapping[int, Reply] = field(default_factory=dict)
    errors: Mapping[int, str] = field(default_factory=dict)
    limited: bool = False
    name: str = ""
    hidden: str = ""


def hidden(reason: str) -> Op:
    """The description of a route that is not part of the API: ``reason`` says what it is."""
    return Op(reason, hidden=reason)


@dataclass(frozen=True)
class Declared:
    """A described route: its op, and, for an :func:`~tgateway.http.auth.authorized` route,
    what it needs (a :class:`~tgateway.http.auth.Need` or a function of the route's owner)."""

    op: Op
    authorized: bool = False
    need: Any = None


@dataclass
class Described:
    """The descriptions of one Klein app's routes, by (rule, method), and its port's schemes."""

    schemes: tuple[str, ...] = GATEWAY_SCHEMES
    routes: dict[tuple[str, str], Declared] = field(default_factory=dict)


_ATTR = "tgateway_described"


def described(app: Klein) -> Described:
    """The descriptions of ``app``'s routes (kept on its URL map, which Klein shares with the
    copies it binds to instances)."""
    url_map = app.url_map
    d = url_map.__dict__.get(_ATTR)
    if d is None:
        d = Described()
        setattr(url_map, _ATTR, d)
    return d


def describe(app: Klein, path: str, methods: Iterable[str], op: Op, *,
             authorized: bool = False, need: NeedOf | None = None) -> None:
    """Record ``op`` as the description of ``path`` for ``methods`` (a GET also covers the HEAD
    werkzeug adds to it)."""
    table = described(app).routes
    for m in methods:
        table[(path, m.upper())] = Declared(op, authorized, need)


def route(app: Klein, path: str, *, op: Op, methods: Sequence[str], **kw: Any
          ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``app.route(path, methods=methods, **kw)`` with its description."""

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        describe(app, path, methods, op)
        if kw.get("branch"):  # Klein adds a rule for the paths under it
            describe(app, path.rstrip("/") + "/<path:__rest__>", methods, op)
        return app.route(path, methods=methods, **kw)(f)

    return deco


@dataclass(frozen=True)
class Route:
    """A route of a mounted resource that is not a Klein app: its full path on the site (in
    werkzeug's syntax), its methods and description."""

    path: str
    methods: Sequence[str]
    op: Op
    need: Any = None


# the walk over a site ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    path: str  # werkzeug rule
    method: str
    endpoint: str
    declared: Declared | None
    schemes: tuple[str, ...]


def _klein_app(resource: IResource) -> Klein | None:
    return getattr(resource, "_app", None)


def _walk(root: MountRoot) -> Iterator[_Found | str]:
    """Every route of the site: a :class:`_Found`, or the path of a mount with nothing said."""
    seen: set[int] = set()
    for path, resource, routes in root.entries():
        app = _klein_app(resource)
        if app is None:
            if not routes:
                yield path
            for r in routes:
                for m in r.methods:
                    yield _Found(r.path, m.upper(), "", Declared(r.op, r.need is not None, r.need),
                                 GATEWAY_SCHEMES)
            continue
        if id(app.url_map) in seen:
            continue
        seen.add(id(app.url_map))
        d = described(app)
        for rule in app.url_map.iter_rules():
            for m in sorted(rule.methods or ()):
                if m == "OPTIONS" and (rule.rule, m) not in d.routes:
                    continue  # werkzeug adds OPTIONS to no rule; ours are preflights
                declared = d.routes.get((rule.rule, m))
                if declared is None and m == "HEAD":
                    declared = d.routes.get((rule.rule, "GET"))
                yield _Found(rule.rule, m, str(rule.endpoint), declared, d.schemes)


def undescribed(root: MountRoot) -> list[str]:
    """What the site serves without a description: ``"METHOD /rule"`` or ``"mount /path"``."""
    out = []
    for found in _walk(root):
        if isinstance(found, str):
            out.append(f"mount {found}")
        elif found.declared is None:
            out.append(f"{found.method} {found.path}")
    return out


def _path_parts(rule: str) -> tuple[str, list[tuple[str, str]]]:
    params = [(conv or "default", name) for conv, name in _PARAM.findall(rule)]
    return _PARAM.sub(lambda m: "{" + m.group(2) + "}", rule), params


def _operation(found: _Found, op_id: str) -> dict[str, Any]:
    from .auth import Need  # noqa: PLC0415

    declared = found.declared
    assert declared is not None
    op = declared.op
    head = found.method == "HEAD"
    path, params = _path_parts(found.path)
    out: dict[str, Any] = {"operationId": op_id, "summary": op.summary}
    if op.tags:
        out["tags"] = list(op.tags)
    description = op.description
    parameters: list[dict[str, Any]] = []
    errors: dict[int, str] = {}
    in_path = {p.name: p for p in op.params if p.where == "path"}
    for conv, name in params:
        schema, status, why = _CONVERTERS.get(conv, _CONVERTERS["default"])
        entry = {"name": name, "in": "path", "required": True, "schema": dict(schema)}
        said = in_path.pop(name, None)
        if said is not None:  # the values this route serves, narrower than the converter's
            entry["schema"] = dict(said.schema)
            if said.description:
                entry["description"] = said.description
        parameters.append(entry)
        if why:
            errors.setdefault(status, why)
    if in_path:
        raise ValueError(f"{found.path}: no path parameter {', '.join(in_path)}")
    for p in (p for p in op.params if p.where != "path"):
        entry: dict[str, Any] = {"name": p.name, "in": p.where, "schema": dict(p.schema)}
        if p.required:
            entry["required"] = True
        if p.description:
            entry["description"] = p.description
        parameters.append(entry)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None and not head:
        body: dict[str, Any] = {"required": op.body.required,
                                "content": {t: {"schema": s} for t, s in op.body.content.items()}}
        if op.body.description:
            body["description"] = op.body.description
        out["requestBody"] = body
    if declared.authorized:
        need = declared.need
        security: list[dict[str, list[str]]] = [{s: []} for s in found.schemes]
        if need is Need.NONE:
            security = []
        elif need in (Need.USER, Need.ADMIN):
            errors.setdefault(401, "no credentials, or credentials that do not verify")
        else:  # optional, or by configuration
            security = [{}, *security]
            errors.setdefault(401, "credentials that do not verify"
                              + ("" if need is Need.OPTIONAL else
                                 ", or none where the configuration requires them"))
            if need is not Need.OPTIONAL:
                description = (description + "\n\n" if description else "") + (
                    "Whether credentials are required depends on the configuration.")
        if need is Need.ADMIN:
            errors.setdefault(403, "the caller is not an administrator (admin.pubkeys)")
        out["security"] = security
    else:
        out["security"] = []
    if description:
        out["description"] = description
    responses: dict[str, Any] = {}
    for status, reply in sorted(op.replies.items()):
        r: dict[str, Any] = {"description": reply.description}
        content = dict(reply.content)
        if reply.json is not None:
            content[JSON] = reply.json
        if content and not head:
            r["content"] = {t: {"schema": s} for t, s in content.items()}
        if reply.headers:
            r["headers"] = {name: _header(s) for name, s in reply.headers.items()}
        if reply.links and not head:
            r["links"] = {name: {"operationId": link.operation,
                                 "parameters": dict(link.parameters)}
                          for name, link in reply.links.items()}
        responses[str(status)] = r
    errors.update(op.errors)
    if op.limited:
        errors.setdefault(429, "rate limited: retry after Retry-After seconds")
    for status, why in sorted(errors.items()):
        r = {"description": why}
        if not head:
            r["content"] = {JSON: {"schema": _ERROR_REF}}
        if status == 429:
            r["headers"] = {"Retry-After": _header(
                {"type": "integer", "minimum": 1, "required": True,
                 "description": "seconds to wait"})}
        responses[str(status)] = r
    out["responses"] = responses
    return out


def _header(schema: Schema) -> dict[str, Any]:
    s = dict(schema)
    required = bool(s.pop("required", False))
    description = s.pop("description", None)
    out: dict[str, Any] = {"schema": s}
    if required:
        out["required"] = True
    if description:
        out["description"] = description
    return out


def document(root: MountRoot, *, title: str, version: str, description: str = "",
             schemes: Sequence[str] = GATEWAY_SCHEMES) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the site whose root is ``root``."""
    found = [f for f in _walk(root) if isinstance(f, _Found) and f.declared is not None
             and not f.declared.op.hidden]
    methods_of: dict[str, set[str]] = {}
    for f in found:
        methods_of.setdefault(f.endpoint or f.path, set()).add(f.method)
    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for f in found:
        op = f.declared.op  # type: ignore[union-attr]
        key = f.endpoint or f.path
        base = op.name or f.endpoint or _slug(f.path)
        methods = methods_of.get(key, set())
        if f.method == "HEAD" and "GET" in methods:
            op_id = base + "_head"
        elif len(methods - {"HEAD"}) > 1:
            op_id = f"{base}_{f.method.lower()}"
        else:
            op_id = base
        n, unique = 2, op_id
        while unique in taken:
            unique, n = f"{op_id}_{n}", n + 1
        taken.add(unique)
        path, _ = _path_parts(f.path)
        paths.setdefault(path, {})[f.method.lower()] = _operation(f, unique)
    used = sorted({s for f in found for s in f.schemes if f.declared and f.declared.authorized})
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    return {
        "openapi": "3.1.0",
        "info": info,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {s: SECURITY_SCHEMES[s] for s in (used or schemes)},
        },
    }


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", _PARAM.sub(r"\2", path)).strip("_") or "root"


class OpenApiResource(Resource):
    """``GET`` the document of a site (built on the first request, when every mount is on)."""

    isLeaf = True

    def __init__(self, root: Callable[[], MountRoot], **info: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._root = root
        self._info = info
        self._body: bytes | None = None

    def render_GET(self, request: Any) -> bytes:
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"error": "not_found", "message": "no such route"}).encode()
        if self._body is None:
            self._body = json.dumps(document(self._root(), **self._info), indent=1).encode()
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(b"cache-control", b"no-cache")
        return self._body

    def render_HEAD(self, request: Any) -> bytes:
        return self.render_GET(request)

    def render(self, request: Any) -> bytes:
        if request.method in (b"GET", b"HEAD"):
            return super().render(request)  # type: ignore[no-untyped-call, no-any-return]
        request.setResponseCode(405)
        request.setHeader(b"allow", b"GET, HEAD")
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"error": "method_not_allowed", "message": "method not allowed"}).encode()


OPENAPI_OP = Op("This port's OpenAPI 3.1 document", tags=("meta",), name="openapi",
                replies={200: Reply("the document", json={"type": "object",
                                                          "required": ["openapi", "paths"]})})

__all__ = [
    "BLOSSOM_SCHEMES", "ERROR", "GATEWAY_SCHEMES", "HEX40", "HEX64", "JSON", "OPENAPI_OP",
    "Body", "Declared", "Described", "Link", "OpenApiResource", "Op", "Param", "Reply", "Route",
    "SECURITY_SCHEMES", "Schema", "describe", "described", "document", "hidden", "route",
    "undescribed",
]
