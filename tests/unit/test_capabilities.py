"""The types the API accepts per engine are the types each engine sends."""

from __future__ import annotations

import pytest

from bisnesgpt.engines.meta.messages import CLOUD_API_TYPES
from bisnesgpt.engines.wwebjs.outgoing import SUPPORTED
from bisnesgpt.messaging.capabilities import SENDABLE_TYPES, UnsupportedMessageType, check_sendable

pytestmark = pytest.mark.unit


def test_the_accept_check_agrees_with_the_engines() -> None:
    assert SENDABLE_TYPES["meta"] == CLOUD_API_TYPES
    assert SENDABLE_TYPES["wwebjs"] == frozenset(SUPPORTED)


@pytest.mark.parametrize(("engine", "kind"), [("meta", "edit"), ("meta", "delete"), ("meta", "poll"),
                                              ("wwebjs", "template"), ("wwebjs", "interactive")])
def test_what_an_engine_cannot_send_is_refused_with_the_code(engine: str, kind: str) -> None:
    with pytest.raises(UnsupportedMessageType) as refused:
        check_sendable(engine, kind, 3)
    assert refused.value.extra == {"code": "UNSUPPORTED_MESSAGE_TYPE", "phoneIndex": 3, "messageType": kind}


def test_what_an_engine_sends_passes() -> None:
    check_sendable("meta", "template", 1)
    check_sendable("wwebjs", "edit", 0)
    check_sendable("wwebjs", "contacts", 0)
    check_sendable("wwebjs", "poll", 0)
    check_sendable("test", "anything", 0)  # an engine this table does not know: the engine decides
