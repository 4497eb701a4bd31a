"""Fixtures of the security tests: the e2e modules' database and Redis, and an api process that
proves phone claims at the Cloud API emulator (``tests.support.claims``), as in production."""

from tests.e2e.conftest import module_db, module_redis
from tests.support.claims import api, emulator

__all__ = ["api", "emulator", "module_db", "module_redis"]
