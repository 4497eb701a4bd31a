"""Server-side request forgery: where tenant-given URLs (webhooks, media) may lead.

Every address below was accepted as a webhook destination, and attempted, before the filter
judged embedded IPv4 forms and the IANA special-purpose ranges; with ``[::127.0.0.1]`` a
tenant reached the machine's loopback and read 2 KB of the answer in the delivery log.
"""

from __future__ import annotations

import ipaddress

import pytest

from bisnesgpt.engines.wwebjs.driver import MediaSource
from bisnesgpt.engines.wwebjs.driver_errors import SendRejected
from bisnesgpt.engines.wwebjs.media import MediaFetcher
from bisnesgpt.webhooks.delivery import Deliverer
from bisnesgpt.webhooks.urls import DestinationRefused, IPAddress, check_endpoint_url, refusal_reason
from tests.support.webhooks import receiver

pytestmark = pytest.mark.security

# (address, what it really is)
REFUSED = [
    ("::127.0.0.1", "IPv4-compatible loopback"),
    ("::ffff:0:127.0.0.1", "IPv4-translated loopback"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("2002:7f00:1::", "6to4 of 127.0.0.1"),
    ("64:ff9b::127.0.0.1", "NAT64 (well-known prefix) of loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 of the cloud metadata address 169.254.169.254"),
    ("64:ff9b:1::a00:1", "NAT64 (local-use prefix) of 10.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("192.0.0.8", "IPv4 dummy address (IETF protocol assignments)"),
    ("100.64.0.1", "shared address space (carrier-grade NAT)"),
    ("198.18.0.1", "benchmarking"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("240.0.0.1", "reserved"),
    ("2001:db8::1", "documentation"),
    ("fd00::1", "unique local"),
    ("fe80::1", "link-local"),
    ("100::1", "discard-only"),
]
ALLOWED = ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "what"), REFUSED, ids=[a for a, _ in REFUSED])
def test_internal_addresses_in_every_disguise_are_refused(address: str, what: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is not None, what


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_stay_allowed_also_through_nat64_and_6to4(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


class FixedResolver:
    def __init__(self, address: str) -> None:
        self.address = ipaddress.ip_address(address)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        return [self.address]


@pytest.mark.parametrize(("address", "what"), REFUSED[:7], ids=[a for a, _ in REFUSED[:7]])
async def test_refused_at_registration_and_at_each_attempt(address: str, what: str) -> None:
    literal = f"http://[{address}]:8080/hook" if ":" in address else f"http://{address}:8080/hook"
    with pytest.raises(DestinationRefused):
        await check_endpoint_url(literal, FixedResolver("8.8.8.8"), allow_private=False)
    # A name that resolves there is refused when saved, and again when an attempt is made.
    with pytest.raises(DestinationRefused):
        await check_endpoint_url("http://hooks.example.com/x", FixedResolver(address), allow_private=False)
    deliverer = Deliverer(resolver=FixedResolver(address), allow_private=False, timeout=5, response_max_bytes=2048,
                          endpoint_concurrency=1)
    try:
        result = await deliverer.post("ep", "http://hooks.example.com/x", b"{}", {})
    finally:
        await deliverer.close()
    assert not result.ok and result.refused and result.excerpt is None, what


async def test_a_private_destination_never_shows_its_answer_to_the_tenant() -> None:
    # Even where an operator allowed private destinations, what an internal service answered
    # (the delivery log's excerpt) is not shown unless that too is asked for.
    with receiver() as server:
        server.set("/internal", body=b'{"secret":"internal data"}')
        for show, expect_excerpt in ((False, None), (True, '{"secret":"internal data"}')):
            deliverer = Deliverer(resolver=FixedResolver("127.0.0.1"), allow_private=True, timeout=5,
                                  response_max_bytes=2048, endpoint_concurrency=1, private_excerpts=show)
            try:
                ok = await deliverer.post("ep", server.url("/internal"), b"{}", {})
                assert ok.ok and ok.excerpt == expect_excerpt
            finally:
                await deliverer.close()


@pytest.mark.parametrize(("address", "what"), REFUSED[:7], ids=[a for a, _ in REFUSED[:7]])
async def test_media_urls_to_send_get_the_same_filter(address: str, what: str) -> None:
    # The wwebjs engine downloads media given by URL: the same disguises are refused there,
    # as a literal and as what a name resolves to, before any request is made.
    literal = f"http://[{address}]:8080/a.png" if ":" in address else f"http://{address}:8080/a.png"
    named = "http://cdn.example.com/a.png"
    for url, resolver in ((literal, FixedResolver("8.8.8.8")), (named, FixedResolver(address))):
        fetcher = MediaFetcher(1 << 20, 5, allow_private=False, resolver=resolver)
        with pytest.raises(SendRejected) as refused:
            await fetcher.fetch(MediaSource(url=url))
        assert refused.value.code == "MEDIA_URL_REFUSED", what
