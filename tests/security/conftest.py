"""The security tests that need a running api share the e2e modules' fixtures (one api per module)."""

from tests.e2e.conftest import api, module_db, module_redis

__all__ = ["api", "module_db", "module_redis"]
