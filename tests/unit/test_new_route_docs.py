"""The media and conversation routes document an example answer; conversation cursors round-trip."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI

from bisnesgpt.api import media_routes
from bisnesgpt.api.chat_routes import ChatRoutes
from bisnesgpt.config import Settings
from bisnesgpt.conversations.store import Cursor
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.media.signing import MediaUrlSigner

pytestmark = pytest.mark.unit
BINARY = {("/api/v1/media/{mediaId}", "get"), ("/api/v1/media/{mediaId}/signed", "get")}


def openapi() -> dict[str, Any]:
    app = FastAPI()
    app.include_router(ChatRoutes(None, None, None, Settings()).router)  # type: ignore[arg-type]
    app.include_router(media_routes.build(None, MediaUrlSigner(b"k" * 32, 60)))  # type: ignore[arg-type]
    return app.openapi()


def test_every_new_route_shows_an_example_answer() -> None:
    paths = openapi()["paths"]
    assert {"/api/v1/media", "/api/v1/media/{mediaId}", "/api/v1/chats", "/api/v1/contacts/check"} <= set(paths)
    missing = []
    for path, operations in paths.items():
        for method, operation in operations.items():
            if (path, method) in BINARY:
                assert "application/octet-stream" in operation["responses"]["200"]["content"]
                continue
            examples = [media.get("example") for response in operation["responses"].values()
                        for media in response.get("content", {}).values()]
            if not any(examples):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"no example answer: {missing}"


def test_cursors_round_trip_and_foreign_ones_are_422() -> None:
    cursor = Cursor(datetime(2026, 1, 1, 10, tzinfo=UTC), "123")
    assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor.decode(None) is None
    with pytest.raises(ValidationFailed, match="cursor"):
        Cursor.decode("not-a-cursor!")
