"""What a newcomer meets in the first hour, one rule at a time (issue "the first hour").

The log files' one timestamp, the banner, the errors that say what to do (a refused media
URL naming its setting and logged, invalid JSON naming the body, a number without its
country code), the sandbox's not-on-WhatsApp numbers that the API accepts, and the demo's
banner commands. The whole flow runs in ``tests/e2e/test_demo.py`` and ``test_readme.py``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from bisnesgpt.api.problems import install_problem_handlers
from bisnesgpt.cli.demo_world import SandboxUrls, demo_lines, try_commands
from bisnesgpt.config import Settings
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.engines.meta.window import TemplateRequired, check_window
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.driver_errors import SendRejected
from bisnesgpt.engines.wwebjs.engine import WebEngine
from bisnesgpt.engines.wwebjs.manager import Readiness
from bisnesgpt.messaging.addressing import normalize_recipient
from bisnesgpt.messaging.errors import PermanentSendError, RetryableSendError
from bisnesgpt.orchestrator.banner import frame, public_host, ready_lines
from bisnesgpt.orchestrator.output import file_line
from bisnesgpt.sandbox.wweb.routing import not_on_whatsapp
from tests.support.fakes import message_record

pytestmark = pytest.mark.unit


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, log_dir=tmp_path / "logs", **overrides)


# --- log files: one timestamp per line ------------------------------------------------------------


def test_a_log_file_line_has_exactly_one_timestamp() -> None:
    logged = b"2026-12-02T01:18:18.984 api[26756] INFO bisnesgpt.infra.services: PostgreSQL: ...\n"
    assert file_line(logged) == b"2026-12-02T01:18:18Z api[26756] INFO bisnesgpt.infra.services: PostgreSQL: ...\n"
    raw = b"Traceback (most recent call last):\n"
    stamped = file_line(raw, now=0)
    assert stamped == b"1970-01-01T00:00:00Z Traceback (most recent call last):\n"
    assert file_line(stamped) == stamped  # a line stamped once is never stamped again
    json_line = b'{"ts": "2026-12-02T01:18:18.984Z", "process": "api", "msg": "x"}\n'
    assert file_line(json_line) == json_line  # LOG_FORMAT=json: every line stays one JSON object
    json.loads(file_line(json_line))


# --- the banner of `bisnesgpt start` ----------------------------------------------------------------


def test_the_start_banner_says_where_to_go_where_the_logs_are_and_how_to_stop(tmp_path: Path) -> None:
    lines = ready_lines(_settings(tmp_path, api_port=3000, enable_meta=False), pid=4242)
    text = frame(lines)
    for expected in ("http://localhost:3000/api", "http://localhost:3000/docs", "http://localhost:3000/dashboard",
                     "http://localhost:3000/health/all", f"{(tmp_path / 'logs').resolve()}/<role>-out.log",
                     "Ctrl-C", "kill -TERM 4242", "ready: api, wwebjs", "disabled: meta"):
        assert expected in text, expected
    assert public_host("127.0.0.1") == "127.0.0.1" and public_host("::") == "localhost"
    assert public_host("::1") == "[::1]"


def test_the_demo_banner_shows_the_key_and_three_commands_that_name_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path, host="127.0.0.1", api_port=3999, data_dir=tmp_path / "data")
    commands = try_commands(settings, "bgpt_demo_key")
    assert len(commands) == 3
    assert all(c.startswith("curl ") and "Authorization: Bearer bgpt_demo_key" in c for c in commands)
    assert '"phoneIndex": 0' in commands[0] and '"phoneIndex": 1' in commands[1]
    assert all("http://127.0.0.1:3999/api/" in c for c in commands)
    lines = demo_lines(settings, "bgpt_demo_key", SandboxUrls("http://127.0.0.1:4010", "http://127.0.0.1:3010"),
                       ["something to fix"])
    text = "\n".join(lines)
    assert "bgpt_demo_key" in text and str(tmp_path / "data" / "demo-api-key") in text
    assert "NOTE        something to fix" in text and "http://127.0.0.1:4010/_emulator/docs" in text


# --- errors say what to do ------------------------------------------------------------------------


class _Body(BaseModel):
    message: str


async def test_invalid_json_names_the_body_not_a_character_position() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/send")
    def send(body: _Body) -> dict[str, str]:
        return {"message": body.message}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        answer = await client.post("/send", content=b'{"message": Hello}', headers={"Content-Type": "application/json"})
        missing = (await client.post("/send", json={})).json()
        nowhere = (await client.get("/sned")).json()
    assert answer.status_code == 422
    problem = answer.json()
    assert [e["field"] for e in problem["errors"]] == ["body"]
    assert problem["detail"].startswith("body: not valid JSON at character 12")
    assert "double quotes" in problem["detail"] and "/docs" in problem["detail"]
    assert missing["errors"][0]["field"] == "message" and "/docs" in missing["detail"]
    assert nowhere["detail"] == "Not Found: GET /sned (every route is listed at /docs)"


def test_a_number_without_its_country_code_says_to_give_it() -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalize_recipient("0123456789", field="to")
    assert caught.value.errors[0]["field"] == "to"
    assert "country code" in caught.value.detail and "60123456789" in caught.value.detail
    assert "plus-sign" not in caught.value.detail  # no plus was typed
    with pytest.raises(ValidationFailed) as unknown:
        normalize_recipient("9991234567")
    assert "known country code" in unknown.value.detail


async def test_template_required_says_how_to_start_the_conversation() -> None:
    class NeverWrote:
        async def fetchval(self, *_args: Any) -> None:
            return None

    with pytest.raises(TemplateRequired) as caught:
        await check_window(NeverWrote(), "acme", 1, "60123456789", "text", now=datetime.now(UTC))  # type: ignore[arg-type]
    assert "/api/v2/messages/template/" in caught.value.detail and "once the contact writes" in caught.value.detail


def test_a_send_failure_without_a_provider_document_keeps_its_detail() -> None:
    assert PermanentSendError("no such thing", code="X").details == {"detail": "no such thing"}
    assert RetryableSendError("try later").details == {"detail": "try later"}
    assert PermanentSendError("x", code="131047", details={"code": 131047}).details == {"code": 131047}


@dataclass
class _RefusingSession:
    error: SendRejected

    async def send(self, _message: Any) -> Any:
        raise self.error


@dataclass
class _OneReadySession:
    session: _RefusingSession

    def readiness(self, key: SessionKey) -> Readiness:
        return Readiness("ready", self.session)  # type: ignore[arg-type]

    async def fence_send(self, key: SessionKey) -> None:
        """This process holds the session's lease (the fence before each send passes)."""


async def test_a_refused_media_url_fails_naming_its_setting_and_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    detail = ("media URL refused: 127.0.0.1, a loopback address; media URLs may only use public addresses "
              "(operators can set WWEBJS_MEDIA_ALLOW_PRIVATE_URLS=true for local development)")
    manager = _OneReadySession(_RefusingSession(SendRejected(detail, code="MEDIA_URL_REFUSED")))
    engine = WebEngine(_settings(tmp_path, wwebjs_send_jitter_ms=0), manager)  # type: ignore[arg-type]
    image = message_record(message_type="image", payload={
        "to": "60123456789", "type": "image", "image": {"link": "http://127.0.0.1:3010/samples/image.png"}})
    with caplog.at_level(logging.INFO), pytest.raises(PermanentSendError) as failed:
        await engine.send(image)
    assert failed.value.code == "MEDIA_URL_REFUSED"
    assert isinstance(failed.value.details, dict)
    assert "WWEBJS_MEDIA_ALLOW_PRIVATE_URLS=true" in str(failed.value.details["detail"])
    logged = [r for r in caplog.records if "MEDIA_URL_REFUSED" in r.getMessage()]
    assert logged and logged[0].levelno == logging.WARNING
    assert "WWEBJS_MEDIA_ALLOW_PRIVATE_URLS" in logged[0].getMessage()

    manager.session.error = SendRejected("60123456404 is not on WhatsApp", code="RECIPIENT_NOT_ON_WHATSAPP")
    with pytest.raises(PermanentSendError) as not_there:
        await engine.send(message_record(message_id="m2"))
    assert isinstance(not_there.value.details, dict)
    assert "check the number" in str(not_there.value.details["detail"])


# --- the sandbox's numbers that are not on WhatsApp -------------------------------------------------


def test_the_sandboxs_not_on_whatsapp_numbers_pass_the_api() -> None:
    recipient = normalize_recipient("+60 12-345 6404")  # what a client sends the API
    assert recipient.to == "60123456404"
    assert not_on_whatsapp(recipient.to, [])
    assert not not_on_whatsapp("60123456789", [])
    assert not_on_whatsapp("0123456789", [])  # never a full number: kept for the network's own tests
    assert not_on_whatsapp("60111", ["60111"])
