"""Resolving a phone's anti-ban controls, the CLI's options for them, and a phone's own send jitter."""

from __future__ import annotations

import pytest

from bisnesgpt.cli.antiban import antiban_changes, describe
from bisnesgpt.config import Settings
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.engines.wwebjs.antiban import AntiBan
from bisnesgpt.engines.wwebjs.antiban_settings import CONTROLS, AntiBanOverrides, global_policy, resolve
from bisnesgpt.engines.wwebjs.pacing import SessionPacer

NO_OPTIONS = dict.fromkeys(("simulate_typing", "jitter_ms", "daily_message_cap", "daily_new_chat_cap", "cap_action",
                            "warmup_days", "check_on_whatsapp", "inherit"))


def test_each_control_comes_from_the_phone_else_the_company_else_the_settings() -> None:
    settings = Settings(wwebjs_daily_new_chat_cap=7, wwebjs_warmup_days=3)
    policy = resolve(settings, AntiBanOverrides(daily_new_chat_cap=0, send_jitter_ms=900),
                     AntiBanOverrides(daily_new_chat_cap=5, warmup_days=10, check_on_whatsapp=True))
    assert (policy.daily_new_chat_cap, policy.send_jitter_ms, policy.warmup_days, policy.check_on_whatsapp) == (
        0, 900, 10, True)  # a phone's 0 (no cap) is its own choice, not "inherit"
    assert policy.sources == {"simulate_typing": "global", "send_jitter_ms": "phone", "daily_message_cap": "global",
                              "daily_new_chat_cap": "phone", "daily_cap_action": "global", "warmup_days": "company",
                              "check_on_whatsapp": "company"}
    assert not policy.capped and global_policy(settings).capped
    assert set(policy.sources) == set(CONTROLS)


def test_typing_follows_the_phones_policy_unless_the_message_says() -> None:
    antiban = AntiBan(Settings(wwebjs_simulate_typing=False, wwebjs_typing_ms_per_char=10), None)
    on = resolve(antiban.settings, AntiBanOverrides(simulate_typing=True), AntiBanOverrides())
    assert antiban.typing_seconds("hello", policy=on) == pytest.approx(0.05)
    assert antiban.typing_seconds("hello") == 0 and antiban.typing_seconds("hello", False, on) == 0


def test_the_cli_options_become_changes() -> None:
    assert antiban_changes(**NO_OPTIONS) == {}
    changes = antiban_changes(**{**NO_OPTIONS, "daily_message_cap": 0, "simulate_typing": False,
                                 "inherit": ["warmup-days,send_jitter_ms"]})
    assert changes == {"daily_message_cap": 0, "simulate_typing": False, "warmup_days": None, "send_jitter_ms": None}
    assert antiban_changes(**{**NO_OPTIONS, "inherit": ["all"]}) == dict.fromkeys(CONTROLS)
    with pytest.raises(ValidationFailed, match="not a control"):
        antiban_changes(**{**NO_OPTIONS, "inherit": ["colour"]})
    with pytest.raises(ValidationFailed, match="both set and inherited"):
        antiban_changes(**{**NO_OPTIONS, "warmup_days": 2, "inherit": ["warmup_days"]})
    assert describe(AntiBanOverrides()) == "none (every control inherits)"
    assert describe(AntiBanOverrides(warmup_days=2, daily_cap_action="fail")) == "daily_cap_action=fail, warmup_days=2"


def test_a_phones_own_jitter_spaces_its_sends() -> None:
    pacer = SessionPacer(1.0, 0, clock=lambda: 0.0, rand=lambda: 1.0)
    assert pacer.reserve("a", max_wait=100, jitter_ms=2_000) == 0
    assert pacer.reserve("a", max_wait=100) == pytest.approx(3.0)  # 1 s interval + the phone's 2 s gap
    assert pacer.reserve("b", max_wait=100) == 0
    assert pacer.reserve("b", max_wait=100) == pytest.approx(1.0)  # the pacer's own gap (0)
