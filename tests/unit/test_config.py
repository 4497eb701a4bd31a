"""Settings: environment names, derived values, and one readable line on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bisnesgpt.config import load_settings, mask_url
from bisnesgpt.core.errors import ConfigError

pytestmark = pytest.mark.unit


def test_defaults_match_the_architecture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in list(os.environ):
        if name.startswith(("REDIS_", "DATABASE_", "API_", "META_", "WWEBJS_", "ENABLE_", "PORT")):
            monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.api_port, settings.wwebjs_port, settings.meta_port, settings.port) == (3000, 3001, 3002, 8443)
    assert settings.pool_max_for("api") == 20
    assert settings.pool_max_for("wwebjs") == 10
    assert settings.pool_max_for("meta") == 20
    assert settings.heartbeat_interval == 10_000
    assert settings.max_heartbeat_age == 60_000
    assert settings.wwebjs_max_messages_per_second == 10
    assert settings.meta_max_messages_per_second == 20
    assert settings.database_url is None
    assert settings.effective_redis_url is None


def test_redis_host_port_password_build_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss word")
    settings = load_settings()
    assert settings.effective_redis_url == "redis://:p%40ss%20word@cache.internal:6380/0"
    monkeypatch.setenv("REDIS_URL", "redis://other:6379/2")
    assert load_settings().effective_redis_url == "redis://other:6379/2"


def test_redis_sentinels_build_a_sentinel_url_every_client_understands(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "REDIS_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_SENTINELS", "s1:26379, s2:26380,s3")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "shop")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "sent")
    monkeypatch.setenv("REDIS_DB", "2")
    url = load_settings().effective_redis_url
    assert url == "redis+sentinel://:p%40ss@s1:26379,s2:26380,s3/shop/2?sentinel_password=sent"
    assert mask_url(url) == "redis+sentinel://:***@s1:26379,s2:26380,s3/shop/2?sentinel_password=***"
    monkeypatch.setenv("REDIS_SENTINELS", "s1:notaport")
    with pytest.raises(ConfigError, match="REDIS_SENTINELS"):
        load_settings()
    monkeypatch.delenv("REDIS_SENTINELS")
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://s1:26379/")
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings()


def test_a_database_url_naming_standbys_only_ever_uses_a_writable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@db1:5432,db2:5433/gw?sslmode=prefer")
    assert load_settings().database_url == \
        "postgresql://app:pw@db1:5432,db2:5433/gw?sslmode=prefer&target_session_attrs=read-write"
    monkeypatch.setenv("DATABASE_URL", "postgresql://db1,db2/gw?target_session_attrs=primary")
    assert load_settings().database_url == "postgresql://db1,db2/gw?target_session_attrs=primary"
    monkeypatch.setenv("DATABASE_URL", "postgresql://db1:5432/gw")
    assert load_settings().database_url == "postgresql://db1:5432/gw"
    monkeypatch.setenv("DATABASE_URL", "postgresql://db1:5432,db2:x/gw")
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings()


def test_dotenv_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("API_PORT=4100\nMETA_PORT=4102\n")
    monkeypatch.delenv("API_PORT", raising=False)
    monkeypatch.setenv("META_PORT", "5102")
    settings = load_settings()
    assert settings.api_port == 4100
    assert settings.meta_port == 5102


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("API_PORT", "abc", "invalid setting API_PORT='abc'"),
        ("API_PORT", "70000", "invalid setting API_PORT='70000'"),
        ("DATABASE_URL", "mysql://localhost/x", "invalid setting DATABASE_URL='mysql://localhost/x'"),
        ("DATABASE_URL", "postgresql://", "invalid setting DATABASE_URL"),
        ("ENCRYPTION_KEY", "abc", "invalid setting ENCRYPTION_KEY: must be 64 hex characters"),
        ("ENABLE_META", "perhaps", "invalid setting ENABLE_META='perhaps'"),
        ("REDIS_URL", "http://x", "invalid setting REDIS_URL='http://x'"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)


def test_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:hunter2@db:notaport/x")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)
    assert mask_url("redis://:hunter2@h:1/0") == "redis://:***@h:1/0"


@pytest.mark.parametrize(
    "env",
    [{"API_PORT": "abc"}, {"DATABASE_URL": "not-a-url"}, {"ENCRYPTION_KEY": "0" * 63}],
)
def test_bad_setting_exits_2_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bisnesgpt", "migrate"], env={**os.environ, **env}, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bisnesgpt: invalid setting ")
    assert "Traceback" not in result.stderr
