"""File names and content types of uploads (:mod:`tgateway.storage.naming`)."""

from __future__ import annotations

import pytest

from tgateway.storage.naming import choose_mime, clean_name


@pytest.mark.parametrize(
    "given, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("a\\b\\c.txt", "c.txt"),
        ("bad\x00name\n.mp4", "bad_name_.mp4"),
        ("", "FALLBACK"),
        ("..", "FALLBACK"),
        ("x" * 300, "x" * 240),
    ],
)
def test_clean_name(given: str, expected: str) -> None:
    assert clean_name(given, "FALLBACK") == expected


def test_mime_choice() -> None:
    assert choose_mime("video/webm", "x.bin", b"") == "video/webm"
    assert choose_mime("application/octet-stream", "a.mp4", b"") == "video/mp4"
    assert choose_mime(None, "noext", b"\x00\x00\x00\x18ftypisom") == "video/mp4"
    assert choose_mime(None, "noext", b"\x1a\x45\xdf\xa3") == "video/webm"
    assert choose_mime("garbage", "noext", b"") == "application/octet-stream"
    assert choose_mime(None, "noext", b"\x89PNG\r\n\x1a\nxxxx") == "image/png"



BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


@pytest.mark.parametrize(
    "given, expected",
    [
        ("invoice\u202eFDP.exe", "invoiceFDP.exe"),
        ("a" + BIDI + "b.txt", "ab.txt"),
        ("zero\u200bwidth\ufeff\u00ad.bin", "zerowidth.bin"),
        ("c1\x85\x9fctl.bin", "c1__ctl.bin"),
        ("line\u2028para\u2029.bin", "line_para_.bin"),
        ("\u202e.hidden. ", "hidden"),
        ("e\u200d\u0301.txt", "\u00e9.txt"),  # what a dropped character joins is NFC again
        ("\u202e\u2066", "FALLBACK"),
        ("caf\u00e9 \u65e5\u672c.mp4", "caf\u00e9 \u65e5\u672c.mp4"),
        ("\U0001f600 ok.png", "\U0001f600 ok.png"),
    ],
)
def test_clean_name_drops_bidi_and_format_characters(given: str, expected: str) -> None:
    assert clean_name(given, "FALLBACK") == expected


def test_clean_name_is_idempotent_and_bounded() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=2000, deadline=None)
    @given(st.text(max_size=300) | st.text(alphabet=st.sampled_from(
        "ae. /\\\x00\x85\u0301\u200d\u202e\u2028\u00e9\u1100\u1161"), max_size=300))
    def check(raw: str) -> None:
        import unicodedata

        name = clean_name(raw, "F")
        assert clean_name(name, "F") == name
        assert len(name.encode("utf-8")) <= 240 and unicodedata.is_normalized("NFC", name)
        assert not any(c in "/\\" or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")
                       for c in name)

    check()
