"""The kind 24242 check (tgateway.blossom.auth.check_token): a pure function of header and now."""

from __future__ import annotations

import base64
import json
import time

import pytest

from tgateway.blossom.auth import AuthError, check_token, decode_token, server_domain
from tgateway.nostr.event import public_key_hex

from .tokens import SECRET, bad_signature, encode, header, make_event

SHA = "ab" * 32
OTHER = "cd" * 32
NOW = time.time()
DOMAINS = {"cdn.example.com"}


@pytest.fixture(autouse=True)
def _now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test checks at the time it runs: the tokens it signs are stamped with the clock of
    that moment, and the suite may reach this module minutes after importing it."""
    monkeypatch.setitem(globals(), "NOW", time.time())


def check(h: str, verb: str = "upload", **kw: object) -> object:
    return check_token(h, verb=verb, now=kw.pop("now", NOW), domains=kw.pop("domains", DOMAINS),
                       **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("pad", [False, True])
def test_good_token_in_every_base64_form(urlsafe: bool, pad: bool) -> None:
    # a content string whose JSON base64 has '+'/'/' and padding in standard form
    ev = make_event("upload", hashes=(SHA,), extra=(("note", "??>>~~"),))
    auth = check_token(encode(ev, urlsafe=urlsafe, pad=pad), verb="upload", now=NOW,
                       domains=DOMAINS)
    assert auth.pubkey == public_key_hex(SECRET)
    assert auth.allows(SHA) and not auth.allows(OTHER)


def test_missing_header_is_auth_required() -> None:
    with pytest.raises(AuthError) as e:
        check_token(None, verb="upload", now=NOW, domains=DOMAINS)
    assert e.value.status == 401 and e.value.code == "auth_required"


@pytest.mark.parametrize(
    "value, code",
    [
        ("Bearer abc", "malformed_auth"),
        ("Nostr", "malformed_auth"),
        ("Nostr !!!notbase64!!!", "malformed_auth"),
        ("Nostr " + base64.b64encode(b"not json").decode(), "malformed_auth"),
        ("Nostr " + base64.b64encode(b"[1,2]").decode(), "invalid_auth"),
        ("Nostr a", "malformed_auth"),
    ],
)
def test_malformed_headers(value: str, code: str) -> None:
    with pytest.raises(AuthError) as e:
        check(value)
    assert e.value.status == 401 and e.value.code == code


def test_expired() -> None:
    with pytest.raises(AuthError, match="expired"):
        check(header("upload", hashes=(SHA,), expiration=int(NOW) - 1))


def test_no_expiration_tag() -> None:
    ev = make_event("upload", hashes=(SHA,))
    from tgateway.nostr.event import EventTemplate, sign

    ev2 = sign(EventTemplate(kind=24242, created_at=ev["created_at"],
                             tags=(("t", "upload"), ("x", SHA)), content="x"), SECRET).to_json()
    with pytest.raises(AuthError, match="no expiration"):
        check(encode(ev2))


def test_created_in_the_future() -> None:
    with pytest.raises(AuthError, match="future"):
        check(header("upload", hashes=(SHA,), created_at=int(NOW) + 3600,
                     expiration=int(NOW) + 7200))


def test_wrong_verb() -> None:
    with pytest.raises(AuthError) as e:
        check(header("delete", hashes=(SHA,)), verb="upload")
    assert e.value.code == "wrong_verb"


def test_wrong_kind() -> None:
    with pytest.raises(AuthError, match="kind 24242"):
        check(encode(make_event("upload", hashes=(SHA,), kind=27235)))


def test_bad_signature() -> None:
    with pytest.raises(AuthError, match="signature"):
        check(encode(bad_signature(make_event("upload", hashes=(SHA,)))))


def test_tampered_tags_change_the_id() -> None:
    ev = make_event("upload", hashes=(SHA,))
    ev["tags"] = [["t", "upload"], ["x", OTHER], ["expiration", str(int(NOW) + 600)]]
    with pytest.raises(AuthError, match="id does not match"):
        check(encode(ev))


def test_upload_and_delete_need_an_x_tag_list_does_not() -> None:
    with pytest.raises(AuthError, match="x tag"):
        check(header("upload"))
    with pytest.raises(AuthError, match="x tag"):
        check(header("delete"), verb="delete")
    assert check(header("list"), verb="list").hashes == frozenset()  # type: ignore[attr-defined]


def test_get_needs_a_server_or_x_scope() -> None:
    with pytest.raises(AuthError):
        check(header("get"), verb="get")
    check(header("get", servers=("cdn.example.com",)), verb="get")
    check(header("get", hashes=(SHA,)), verb="get")


def test_bad_x_tag() -> None:
    with pytest.raises(AuthError, match="not a sha256"):
        check(header("upload", hashes=("xyz",)))


@pytest.mark.parametrize("server", ["cdn.example.com", "CDN.example.com",
                                    "https://cdn.example.com/", "cdn.example.com:443"])
def test_server_tag_matches_this_domain(server: str) -> None:
    check(header("upload", hashes=(SHA,), servers=(server,)))


def test_server_tag_for_another_server() -> None:
    with pytest.raises(AuthError) as e:
        check(header("upload", hashes=(SHA,), servers=("other.example.net",)))
    assert e.value.code == "wrong_server"


def test_one_of_several_server_tags_is_enough() -> None:
    check(header("upload", hashes=(SHA,), servers=("other.example.net", "cdn.example.com")))


def test_decode_token_forms() -> None:
    ev = make_event("list")
    for urlsafe in (False, True):
        for pad in (False, True):
            assert decode_token(encode(ev, urlsafe=urlsafe, pad=pad)) == ev


def test_server_domain() -> None:
    assert server_domain("http://127.0.0.1:8082") == "127.0.0.1"
    assert server_domain("[::1]:8082") == "::1"
    assert server_domain("Example.COM.") == "example.com"


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_",
            max_size=400).map(lambda t: "Nostr " + t),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=4)
                 | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
    .map(lambda obj: "Nostr " + base64.b64encode(json.dumps(obj).encode()).decode()),
))
def test_garbage_only_ever_raises_auth_error(value: object) -> None:
    with pytest.raises(AuthError):
        check_token(value, verb="upload", now=NOW, domains=DOMAINS)  # type: ignore[arg-type]
