"""Fixtures of the security tests: the e2e modules' database, Redis and api process."""

from tests.e2e.conftest import api, module_db, module_redis

__all__ = ["api", "module_db", "module_redis"]
