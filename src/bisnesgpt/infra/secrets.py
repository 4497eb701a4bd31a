"""The AES key for secrets at rest: ENCRYPTION_KEY, or (embedded default only) a generated one.

With an external DATABASE_URL the key must be configured: a key that lives only on one
machine's disk would make the database's secrets unreadable elsewhere. On the embedded
default a key is generated once into ``$DATA_DIR/encryption.key`` (mode 0600) next to the
data it protects, so ``make start`` works on a fresh machine.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

from pydantic import SecretStr

from bisnesgpt.config import Settings
from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.core.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_encryption_key(settings: Settings) -> Settings:
    """Settings with ``encryption_key`` filled in (or ConfigError naming the variable)."""
    if settings.encryption_key is not None:
        return settings
    path = settings.data_dir / "encryption.key"
    if path.exists():
        key = path.read_text().strip()
    elif settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process (PM2 starts the roles at once) won the race
            key = _read_key_when_written(path)
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(key + "\n")
            log.warning("ENCRYPTION_KEY not set: generated one in %s (set ENCRYPTION_KEY in production)", path)
    else:
        raise ConfigError("invalid setting ENCRYPTION_KEY: required when DATABASE_URL is set (64 hex characters)")
    return settings.model_copy(update={"encryption_key": SecretStr(key)})


def _read_key_when_written(path: Path, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        key = path.read_text().strip()
        if key or time.monotonic() > deadline:
            return key
        time.sleep(0.02)


def secret_box(settings: Settings) -> SecretBox:
    """The box for the resolved ENCRYPTION_KEY, and ENCRYPTION_KEY_PREVIOUS when set (ConfigError
    before ``resolve_encryption_key``)."""
    if settings.encryption_key is None:
        raise ConfigError("invalid setting ENCRYPTION_KEY: not resolved (call resolve_encryption_key first)")
    previous = settings.encryption_key_previous
    return SecretBox.from_hex(settings.encryption_key.get_secret_value(),
                              previous.get_secret_value() if previous is not None else None)
