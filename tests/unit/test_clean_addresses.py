"""The memory of addresses without failed authentications: trusted only while heard, for its TTL."""

from __future__ import annotations

import pytest

from bisnesgpt.api.rate_limits import MAX_CLEAN_ADDRESSES, CleanAddresses
from bisnesgpt.coordination.channels import AUTH_FAILED
from bisnesgpt.coordination.coordinator import ConnectionListener, Handler
from tests.support.clock import ManualClock

pytestmark = pytest.mark.unit


class Subscriptions:
    """The coordinator's narrow face, driven by the test."""

    def __init__(self, connected: bool = True) -> None:
        self.handlers: dict[str, list[Handler]] = {}
        self.listeners: list[ConnectionListener] = []
        self.connected = connected

    def hears(self, channel: str) -> bool:
        return self.connected and channel in self.handlers

    def on(self, channel: str, handler: Handler) -> None:
        self.handlers.setdefault(channel, []).append(handler)

    def on_connection(self, listener: ConnectionListener) -> None:
        self.listeners.append(listener)


def test_an_address_is_trusted_for_the_ttl_and_forgotten_when_a_failure_is_heard() -> None:
    clock, subscriptions = ManualClock(), Subscriptions()
    clean = CleanAddresses(2.0, clock=clock)
    clean.attach(subscriptions)
    clean.remember("203.0.113.7")
    clean.remember("198.51.100.9")
    clock.now += 1.9
    assert clean.trusted("203.0.113.7")
    for handler in subscriptions.handlers[AUTH_FAILED]:
        handler({"address": "203.0.113.7"})
    assert not clean.trusted("203.0.113.7") and clean.trusted("198.51.100.9")
    clock.now += 0.2
    assert not clean.trusted("198.51.100.9")  # never older than the TTL


def test_nothing_is_trusted_without_the_subscription_or_without_a_ttl() -> None:
    subscriptions = Subscriptions(connected=False)
    clean = CleanAddresses(60.0)
    clean.remember("a")
    assert not clean.trusted("a")  # not attached
    clean.attach(subscriptions)
    clean.remember("a")
    assert not clean.trusted("a")
    subscriptions.connected = True
    subscriptions.listeners[0](True)
    clean.remember("a")
    assert clean.trusted("a")
    subscriptions.connected = False
    assert not clean.trusted("a")  # a failure announced meanwhile would be missed
    subscriptions.listeners[0](False)
    subscriptions.connected = True
    subscriptions.listeners[0](True)
    assert not clean.trusted("a")  # what it knew before the loss is gone
    off = CleanAddresses(0.0)
    off.attach(Subscriptions())
    off.remember("a")
    assert not off.trusted("a")


def test_a_local_failure_forgets_at_once_and_a_flood_of_addresses_cannot_grow_it() -> None:
    clean = CleanAddresses(60.0)
    clean.attach(Subscriptions())
    clean.remember("a")
    clean.forget("a")
    assert not clean.trusted("a")
    for n in range(MAX_CLEAN_ADDRESSES):
        clean.remember(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    clean.remember("b")
    assert clean.trusted("b") and not clean.trusted("10.0.0.0")
