"""Pure rules of the orchestrator and health views: backoff, memory sizes, the line
protocol, shutdown targeting, and how /health/all judges processes."""

from __future__ import annotations

from typing import Any

import pytest

from bisnesgpt.config import Settings, load_settings
from bisnesgpt.coordination.coordinator import shutdown_targets_me
from bisnesgpt.core.errors import ConfigError
from bisnesgpt.health.overview import build_overview, expected_names, judge
from bisnesgpt.orchestrator import protocol
from bisnesgpt.orchestrator.children import describe_exit
from bisnesgpt.orchestrator.policy import RestartPolicy
from bisnesgpt.orchestrator.supervisor import Supervisor

pytestmark = pytest.mark.unit


def _settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def test_default_restart_policies_are_the_originals() -> None:
    settings = _settings()
    api, wwebjs, meta = (RestartPolicy.for_role(settings, r) for r in ("api", "wwebjs", "meta"))
    assert (api.base_delay_ms, api.min_uptime_ms, api.max_restarts, api.max_memory_bytes) == (2000, 10_000, 5, 2 << 30)
    assert (wwebjs.base_delay_ms, wwebjs.min_uptime_ms, wwebjs.max_restarts, wwebjs.max_memory_bytes) == (
        5000, 30_000, 10, 4 << 30)
    assert (meta.base_delay_ms, meta.min_uptime_ms, meta.max_restarts, meta.max_memory_bytes) == (
        3000, 10_000, 10, 1 << 30)
    assert api.fatal_on_give_up and not wwebjs.fatal_on_give_up and not meta.fatal_on_give_up


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    policy = RestartPolicy.for_role(_settings(), "api")
    assert [policy.delay_ms(n) for n in range(1, 8)] == [2000, 4000, 8000, 16000, 32000, 60000, 60000]
    assert policy.delay_ms(10_000) == 60_000
    assert policy.was_stable(10.0) and not policy.was_stable(9.99)
    assert not policy.gives_up_after(4) and policy.gives_up_after(5)


@pytest.mark.parametrize(("value", "expected"), [
    ("2G", 2 * 1024**3), ("512M", 512 * 1024**2), ("300K", 300 * 1024), ("1.5G", int(1.5 * 1024**3)),
    ("1048576", 1048576), ("64mb", 64 * 1024**2), ("0", 0),
])
def test_memory_limits_accept_pm2_style_sizes(value: str, expected: int) -> None:
    assert load_settings(_env_file=None, meta_max_memory=value).meta_max_memory == expected


def test_a_bad_memory_limit_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="API_MAX_MEMORY='2X'"):
        load_settings(_env_file=None, api_max_memory="2X")


def test_test_crash_on_start_is_off_unless_named() -> None:
    assert not any(_settings().crashes_on_start(r) for r in ("api", "wwebjs", "meta", "legacy"))
    settings = _settings(test_crash_on_start=" meta , wwebjs")
    assert settings.crashes_on_start("meta") and settings.crashes_on_start("wwebjs")
    assert not settings.crashes_on_start("api")


def test_children_follow_instances_and_enable_flags() -> None:
    names = [s.name for s in Supervisor.child_specs(_settings(api_instances=3, meta_instances=2))]
    assert names == ["api", "api-1", "api-2", "wwebjs", "meta", "meta-1"]
    names = [s.name for s in Supervisor.child_specs(_settings(enable_meta=False, enable_wwebjs=False))]
    assert names == ["api"]


def test_exit_descriptions() -> None:
    assert describe_exit(-9) == {"signal": "SIGKILL", "exitCode": None}
    assert describe_exit(3) == {"signal": None, "exitCode": 3}


def test_line_decoder_handles_partial_lines_and_garbage() -> None:
    decoder = protocol.LineDecoder()
    assert decoder.feed(b'{"type":"heartbeat"}\n{"type":"sta') == [{"type": "heartbeat"}]
    assert decoder.feed(b'tus_update","status":"ready"}\nnot json\n[1]\n') == [
        {"type": "status_update", "status": "ready"}]
    assert protocol.encode({"a": 1}) == b'{"a":1}\n'
    assert protocol.ping_interval(60_000) == 1.0
    assert protocol.ping_interval(2_000) == 0.5


def test_shutdown_messages_address_name_role_all_and_host() -> None:
    me = {"process_name": "meta-1", "role": "meta", "host": "h1"}
    assert shutdown_targets_me({"targets": ["meta-1"]}, **me)
    assert shutdown_targets_me({"targets": "meta"}, **me)
    assert shutdown_targets_me({"targets": ["all"], "host": "h1"}, **me)
    assert not shutdown_targets_me({"targets": ["all"], "host": "h2"}, **me)
    assert not shutdown_targets_me({"targets": ["meta"]} | {"targets": ["api"]}, **me)
    assert not shutdown_targets_me({"stopping": ["meta-1"]}, **me)  # the orchestrator's announcement


@pytest.mark.parametrize(("reported", "age", "expected"), [
    ("healthy", 1.0, "healthy"), ("healthy", 30.0, "degraded"), ("healthy", 59.9, "degraded"),
    ("healthy", 60.0, "down"), ("healthy", None, "down"), ("error", 1.0, "unhealthy"),
    ("draining", 1.0, "draining"), ("stopped", 1.0, "down"), ("crashed", 0.1, "down"),
    ("errored", 0.1, "down"), ("disabled", 500.0, "disabled"), ("unknown", 1.0, "unhealthy"),
])
def test_judging_one_process(reported: str, age: float | None, expected: str) -> None:
    assert judge(reported, age, 60.0) == expected


def _row(name: str, status: str = "healthy", age: float | None = 1.0, **extra: Any) -> dict[str, Any]:
    role, _, instance = name.partition("-")
    return {"process_name": name, "role": role, "instance_id": int(instance or 0), "status": status,
            "pid": 100, "host": "h", "last_heartbeat": None, "started_at": None, "uptime_seconds": 5,
            "memory_usage_mb": 70, "cpu_usage_percent": 1.0, "active_bots": 0, "messages_processed": 0,
            "error_count": 0, "last_error": None, "restarts": 0, "metadata": {}, "heartbeat_age": age,
            "view_status": None} | extra


def test_overview_counts_every_expected_instance() -> None:
    settings = _settings(api_instances=2, meta_instances=2)
    assert list(expected_names(settings)) == ["api", "api-1", "wwebjs", "meta", "meta-1"]
    rows = [_row("api"), _row("api-1"), _row("wwebjs"), _row("meta"), _row("meta-1", age=70.0)]
    overview = build_overview(rows, settings)
    assert not overview.healthy
    assert overview.roles["meta"].status == "partial" and overview.roles["meta"].ok == 1
    rows[-1] = _row("meta-1")
    assert build_overview(rows, settings).healthy


def test_missing_instances_are_down_and_stale_ones_do_not_count() -> None:
    settings = _settings(api_instances=2)
    overview = build_overview([_row("api"), _row("api-3", status="stopped"), _row("wwebjs"), _row("meta")],
                              settings)
    by_name = {p.process_name: p for p in overview.processes}
    assert by_name["api-1"].status == "down" and by_name["api-1"].expected
    assert by_name["api-3"].status == "down" and not by_name["api-3"].expected
    assert overview.roles["api"].status == "partial"


def test_disabled_roles_are_disabled_not_down() -> None:
    settings = _settings(enable_meta=False)
    overview = build_overview([_row("api"), _row("wwebjs"), _row("meta", status="stopped", age=900.0)], settings)
    assert overview.healthy
    assert overview.roles["meta"].status == "disabled"
    assert {p.process_name: p.status for p in overview.processes}["meta"] == "disabled"


def test_a_process_is_judged_by_the_heartbeat_age_it_declared() -> None:
    settings = _settings()  # 60 s here, but the process said 4 s
    overview = build_overview([_row("api"), _row("wwebjs"), _row("meta", age=4.5,
                                                                 metadata={"maxHeartbeatAgeMs": 4000})], settings)
    assert {p.process_name: p.status for p in overview.processes}["meta"] == "down"


def test_legacy_serves_every_role() -> None:
    settings = _settings(enable_wwebjs=False)
    overview = build_overview([_row("legacy"), _row("api", status="stopped")], settings, legacy=True)
    assert overview.healthy
    assert {n: (r.status, r.served_by) for n, r in overview.roles.items()} == {
        "api": ("healthy", "legacy"), "wwebjs": ("disabled", None), "meta": ("healthy", "legacy")}
