"""Signed media URLs, Range parsing and type resolution: pure logic, no services."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from bisnesgpt.api.media_routes import byte_range
from bisnesgpt.media.signing import MediaUrlSigner, SignatureRefused
from bisnesgpt.media.store import RangeNotSatisfiable, check_blob_name, resolve_type

pytestmark = pytest.mark.unit


def parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path, query["expires"][0], query["signature"][0]


def test_a_signed_url_verifies_until_it_expires() -> None:
    signer = MediaUrlSigner(b"k" * 32, ttl_seconds=60)
    path, expires, signature = parts(signer.url("med_1", "acme", now=1000.0))
    assert path == "/api/v1/media/med_1/signed" and expires == "1060"
    signer.check("med_1", "acme", expires, signature, now=1059.0)
    with pytest.raises(SignatureRefused, match="expired"):
        signer.check("med_1", "acme", expires, signature, now=1061.0)


@pytest.mark.parametrize(("media_id", "company", "expires_delta", "secret"), [
    ("med_2", "acme", 0, b"k" * 32),      # another media id
    ("med_1", "other", 0, b"k" * 32),     # another company's media under the same id
    ("med_1", "acme", 3600, b"k" * 32),   # a later expiry
    ("med_1", "acme", 0, b"x" * 32),      # another key
])
def test_a_changed_url_is_refused(media_id: str, company: str, expires_delta: int, secret: bytes) -> None:
    _path, expires, signature = parts(MediaUrlSigner(b"k" * 32, 60).url("med_1", "acme", now=1000.0))
    with pytest.raises(SignatureRefused, match="does not match"):
        MediaUrlSigner(secret, 60).check(media_id, company, str(int(expires) + expires_delta), signature, now=1001.0)


def test_public_url_makes_signed_urls_absolute() -> None:
    url = MediaUrlSigner(b"k" * 32, 60, "https://gw.example.com/").url("med_1", "acme")
    assert url.startswith("https://gw.example.com/api/v1/media/med_1/signed?")


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("", None), ("bytes=0-0", (0, 0)), ("bytes=10-", (10, 99)), ("bytes=-5", (95, 99)),
    ("bytes=90-500", (90, 99)), ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=-500", (0, 99)),
])
def test_ranges(header: str | None, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=50-10", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, 100)


def test_the_detected_type_wins_unless_it_is_generic() -> None:
    assert resolve_type("image/png", "application/pdf") == "image/png"
    assert resolve_type("application/octet-stream", "Audio/AMR; rate=8000") == "audio/amr"
    assert resolve_type("application/zip", None) == "application/zip"


@pytest.mark.parametrize(("company", "sha"), [("..", "a" * 64), ("a/b", "a" * 64), ("acme", "A" * 64),
                                              ("acme", "a" * 63), ("", "a" * 64)])
def test_blob_names_cannot_escape(company: str, sha: str) -> None:
    with pytest.raises(ValueError):
        check_blob_name(company, sha)
