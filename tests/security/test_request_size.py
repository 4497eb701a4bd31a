"""Request size: each route family has a body limit, answered 413 before the body is read in full.

Before, the API read and parsed a 100 MB body before answering 422, and a 30 MB template send
was accepted, stored and sent. Raw sockets show the 413 arrives while the client is still
sending (or before it sent anything of a declared-too-large body).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.e2e.conftest import module_db, module_redis
from tests.support.pipeline import ApiServer, Tenant, seed_tenant

pytestmark = [pytest.mark.security, pytest.mark.timeout(120)]
__all__ = ["module_db", "module_redis"]

PERSON = "60123456789"
SENDS_LIMIT = 256 * 1024
MEDIA_LIMIT = 512 * 1024  # MEDIA_MAX_BYTES; uploads may add 1 MiB of multipart framing


@pytest.fixture(scope="module")
async def sized(tmp_path_factory: pytest.TempPathFactory, module_db: tuple[str, Database],
                module_redis: str) -> AsyncIterator[tuple[ApiServer, Tenant]]:
    server = ApiServer(tmp_path_factory.mktemp("api"), module_db[0], module_redis,
                       BODY_LIMIT_SENDS=str(SENDS_LIMIT), MEDIA_MAX_BYTES=str(MEDIA_LIMIT))
    tenant = await seed_tenant(module_db[1], "sized", {0: "wwebjs", 1: "meta_direct"})
    try:
        yield await server.start(), tenant
    finally:
        server.stop()


async def _raw(server: ApiServer, tenant: Tenant, path: str, headers: dict[str, str],
               body_chunks: list[bytes], *, finish: bool) -> tuple[bytes, int]:
    """Send a request over a raw socket; the answer read while (maybe) never finishing the body,
    and how many body bytes had been written when it came."""
    parts = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {tenant.api_key}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode())
    written = 0
    answer = b""
    try:
        for chunk in body_chunks:
            writer.write(chunk)
            written += len(chunk)
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(65536), timeout=0.05)
            except TimeoutError:
                continue
            break
        if not answer:
            if finish:
                writer.write(b"0\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(65536), timeout=20)
        while b"\r\n\r\n" in answer and not answer.rstrip().endswith(b"}"):  # the problem body may come later
            more = await asyncio.wait_for(reader.read(65536), timeout=5)
            if not more:
                break
            answer += more
    finally:
        writer.close()
    return answer, written


def _chunked(data: bytes, size: int = 64 * 1024) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size)]


async def test_a_30_mb_template_send_is_refused_413_and_nothing_is_stored(sized: tuple[ApiServer, Tenant],
                                                                         module_db: tuple[str, Database]) -> None:
    server, tenant = sized
    body = json.dumps({"phoneIndex": 1, "templateName": "order_update", "templateLang": "en_US",
                       "templateComponents": [{"type": "body", "parameters": [
                           {"type": "text", "text": "x" * 1000} for _ in range(30_000)]}]}).encode()
    assert len(body) > 30_000_000
    async with httpx.AsyncClient(base_url=server.url, headers=tenant.headers, timeout=60) as client:
        response = await client.post(f"/api/v2/messages/template/sized/{PERSON}", content=body,
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text[:300]
    assert response.json()["type"].endswith("/payload-too-large")
    assert "BODY_LIMIT_SENDS" in response.json()["detail"]
    assert await module_db[1].fetchval("SELECT count(*) FROM messages WHERE company_id = 'sized'") == 0


async def test_a_declared_100_mb_body_is_answered_before_any_of_it_is_sent(sized: tuple[ApiServer, Tenant]) -> None:
    server, tenant = sized
    answer, written = await _raw(server, tenant, "/api/v1/messages",
                                 {"Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)},
                                 [], finish=False)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert written == 0


@pytest.mark.parametrize(("path", "content_type", "limit"), [
    ("/api/v1/messages", "application/json", SENDS_LIMIT),
    ("/api/v1/webhooks", "application/json", 1024 * 1024),  # BODY_LIMIT_DEFAULT
    ("/api/v1/media?companyId=sized", "multipart/form-data; boundary=xyz", MEDIA_LIMIT + 1024 * 1024),
])
async def test_a_streamed_body_is_cut_off_with_413_once_past_its_familys_limit(
        sized: tuple[ApiServer, Tenant], path: str, content_type: str, limit: int) -> None:
    server, tenant = sized
    total = limit * 3
    preamble = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
    data = (preamble if content_type.startswith("multipart") else b'{"to":"' + PERSON.encode() + b'","x":"')
    data += b"a" * (total - len(data))
    answer, written = await _raw(server, tenant, path, {"Content-Type": content_type, "Transfer-Encoding": "chunked"},
                                 _chunked(data), finish=False)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert written < total  # answered while the client was still sending
    assert b"payload-too-large" in answer


async def test_bodies_within_the_limit_reach_the_route(sized: tuple[ApiServer, Tenant]) -> None:
    server, tenant = sized
    async with httpx.AsyncClient(base_url=server.url, headers=tenant.headers, timeout=30) as client:
        near = await client.post("/api/v1/messages", json={"to": PERSON, "type": "text",
                                                           "text": {"body": "x" * 4000}, "pad": "y" * 200_000})
        assert near.status_code == 422  # the route's own validation (no such field "pad"), not the edge
        ok = await client.post("/api/v1/messages", json={"to": PERSON, "type": "text", "text": {"body": "fine"}})
        assert ok.status_code == 202, ok.text
        upload = await client.post("/api/v1/media", params={"companyId": "sized"},
                                   files={"file": ("a.pdf", b"%PDF-1.4\n" + b"0" * 300_000, "application/pdf")})
        assert upload.status_code == 201, upload.text
