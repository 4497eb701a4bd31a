"""Dashboard sessions: signed cookies, expiry, CSRF tokens, same-origin checks; emulator phone object."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.requests import Request

from bisnesgpt.api.auth import Principal
from bisnesgpt.config import Settings
from bisnesgpt.core.errors import ConfigError, Forbidden
from bisnesgpt.dashboard.auth import SessionAuth, SessionSigner
from bisnesgpt.dashboard.pages import _safe_next, _static_file
from bisnesgpt.sandbox.meta_emulator.app import create_app
from bisnesgpt.sandbox.meta_emulator.state import EmulatorState

pytestmark = pytest.mark.unit

KEY_A = "ab" * 32
KEY_B = "cd" * 32


def signer(key: str = KEY_A, hours: float = 12) -> SessionSigner:
    return SessionSigner.from_settings(Settings(encryption_key=SecretStr(key), dashboard_session_hours=hours))


def test_a_cookie_reads_back_as_its_principal_and_nothing_else_does() -> None:
    s = signer()
    company = Principal("company", "acme", 7)
    value, expires = s.issue(company, "fp-1")
    session = s.read(value)
    assert session is not None and session.principal == company and session.key_fingerprint == "fp-1"
    assert time.time() + 11.9 * 3600 < expires < time.time() + 12.1 * 3600

    payload, mac = value.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["c"] = "beta"  # another company, same signature: refused
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=") + "." + mac
    assert s.read(forged) is None
    assert s.read(value[:-2] + ("AA" if value[-2:] != "AA" else "BB")) is None
    assert s.read("") is None and s.read("garbage") is None and s.read("a.b.c") is None
    assert signer(KEY_B).read(value) is None  # another ENCRYPTION_KEY: another signing key
    assert s.read(value, now=expires + 1) is None  # expired


def test_the_signing_key_comes_from_settings_never_a_constant() -> None:
    with pytest.raises(ConfigError):
        SessionSigner.from_settings(Settings(encryption_key=None))
    own = SessionSigner.from_settings(Settings(encryption_key=None,
                                               dashboard_session_secret=SecretStr("x" * 40)))
    value, _ = own.issue(Principal("admin", None, None), "fp")
    assert own.read(value) is not None and signer().read(value) is None


def test_csrf_tokens_are_per_session() -> None:
    s = signer()
    one = s.read(s.issue(Principal("admin", None, None), "fp")[0])
    two = s.read(s.issue(Principal("admin", None, None), "fp")[0])
    assert one is not None and two is not None
    assert s.csrf_token(one) == s.csrf_token(one) != s.csrf_token(two)


def _request(method: str, headers: dict[str, str]) -> Request:
    scope = {"type": "http", "method": method, "path": "/dashboard/api/x", "scheme": "http", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()], "server": ("h", 80)}
    return Request(scope)


def test_actions_need_the_token_and_this_origin() -> None:
    auth = SessionAuth(Settings(encryption_key=SecretStr(KEY_A)))
    ok = {"host": "dash.example:3000", "origin": "http://dash.example:3000"}
    auth.check_csrf(_request("POST", ok), "tok", "tok")
    auth.check_csrf(_request("POST", {"host": "dash.example:3000"}), "tok", "tok")  # no Origin (older clients)
    for headers, presented in ((ok, None), (ok, "other"),
                               ({"host": "dash.example:3000", "origin": "http://evil.example"}, "tok"),
                               ({"host": "dash.example:3000", "origin": "null"}, "tok")):
        with pytest.raises(Forbidden):
            auth.check_csrf(_request("POST", headers), "tok", presented)


def test_secure_cookie_follows_the_scheme_unless_forced() -> None:
    auto = SessionAuth(Settings(encryption_key=SecretStr(KEY_A)))
    assert not auto.secure(_request("GET", {"host": "h"}))
    assert auto.secure(_request("GET", {"host": "h", "x-forwarded-proto": "https"}))
    always = SessionAuth(Settings(encryption_key=SecretStr(KEY_A), dashboard_cookie_secure="always"))
    assert always.secure(_request("GET", {"host": "h"}))


def test_redirects_after_sign_in_stay_inside_the_dashboard() -> None:
    assert _safe_next("/dashboard/queues?x=1") == "/dashboard/queues?x=1"
    for bad in ("https://evil.example/", "//evil.example", "/\\evil", "/api/v1/messages", None, ""):
        assert _safe_next(bad) == "/dashboard"


def test_static_files_are_only_those_shipped() -> None:
    assert _static_file("dashboard.js") is not None
    assert _static_file("vendor/uplot/LICENSE") is not None and _static_file("vendor/swagger-ui/LICENSE") is not None
    for bad in ("../auth.py", "/etc/passwd", "vendor/../../auth.py", "nope.js"):
        assert _static_file(bad) is None


def test_emulator_answers_the_phone_number_object_like_meta() -> None:
    state = EmulatorState()
    state.add_phone("106540352242922", access_token="tok", quality_rating="YELLOW", verified_name="Jaspers Market")
    app = create_app(state)

    async def get(path: str, token: str = "tok") -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emu") as client:
            return await client.get(path, headers={"Authorization": f"Bearer {token}"})

    default = asyncio.run(get("/v23.0/106540352242922"))
    assert default.status_code == 200
    assert default.json() == {"id": "106540352242922", "display_phone_number": "15550000000",
                              "verified_name": "Jaspers Market", "quality_rating": "YELLOW"}
    chosen: Any = asyncio.run(get("/v23.0/106540352242922?fields=code_verification_status,name_status")).json()
    assert chosen == {"id": "106540352242922", "code_verification_status": "VERIFIED", "name_status": "APPROVED"}
    unknown = asyncio.run(get("/v23.0/106540352242922?fields=nonsense"))
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == 100
    wrong_token = asyncio.run(get("/v23.0/106540352242922", token="other"))
    assert wrong_token.status_code == 401 and wrong_token.json()["error"]["code"] == 190
