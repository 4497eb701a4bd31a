"""Media URLs are fetched by our server, so they get the webhook destination rules.

A real local HTTP server stands for the media host; a stand-in resolver (the narrow
``Resolver`` interface) decides what names resolve to.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest

from bisnesgpt.engines.wwebjs.driver import MediaSource
from bisnesgpt.engines.wwebjs.driver_errors import SendRejected
from bisnesgpt.engines.wwebjs.media import MediaFetcher
from bisnesgpt.webhooks.urls import IPAddress

pytestmark = pytest.mark.integration


class MapResolver:
    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        return [ipaddress.ip_address(self.table[host])]


@pytest.fixture
async def media_host() -> AsyncIterator[tuple[int, list[tuple[str, str]]]]:
    """Serves /file (bytes) and /hop (a redirect to Location from the query); records (path, Host)."""
    seen: list[tuple[str, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        path = head.split(" ")[1]
        host = next((line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("host:")),
                    "")
        seen.append((path.split("?")[0], host))
        if path.startswith("/hop?to="):
            writer.write(f"HTTP/1.1 302 Found\r\nLocation: {path[8:]}\r\nContent-Length: 0\r\n\r\n".encode())
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 4\r\n\r\n\x89PNG")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, seen


async def test_private_addresses_are_refused_before_any_request(media_host: tuple[int, list[tuple[str, str]]]) -> None:
    port, seen = media_host
    fetcher = MediaFetcher(1 << 20, 5, allow_private=False, resolver=MapResolver({"intranet.test": "10.1.2.3"}))
    for url in (f"http://127.0.0.1:{port}/file", "http://intranet.test/file", "http://[::1]/file",
                "http://169.254.169.254/latest/meta-data", "file:///etc/passwd"):
        with pytest.raises(SendRejected) as refused:
            await fetcher.fetch(MediaSource(url=url))
        assert refused.value.code == "MEDIA_URL_REFUSED", url
    assert seen == []


async def test_every_redirect_hop_is_checked_and_connects_to_the_checked_address(
        media_host: tuple[int, list[tuple[str, str]]]) -> None:
    port, seen = media_host
    resolver = MapResolver({"media.test": "127.0.0.1"})
    fetcher = MediaFetcher(1 << 20, 5, allow_private=True, resolver=resolver)
    media = await fetcher.fetch(MediaSource(url=f"http://127.0.0.1:{port}/hop?to=http://media.test:{port}/file"))
    assert (media.data, media.mime_type) == (b"\x89PNG", "image/png")
    assert resolver.asked == ["media.test"]  # the second hop was resolved (and checked) by us
    assert seen == [("/hop", f"127.0.0.1:{port}"), ("/file", f"media.test:{port}")]

    strict = MediaFetcher(1 << 20, 5, allow_private=False, resolver=MapResolver({"cdn.test": "10.9.9.9"}))
    with pytest.raises(SendRejected) as refused:
        await strict.fetch(MediaSource(url="http://cdn.test/hop"))
    assert "10.9.9.9" in str(refused.value)
