"""Restart policy of a role: exponential backoff, stability reset, give-up, memory limit."""

from __future__ import annotations

from dataclasses import dataclass

from bisnesgpt.config import Role, Settings


@dataclass(frozen=True)
class RestartPolicy:
    """How the orchestrator restarts one role's children (the ``<ROLE>_*`` settings)."""

    role: Role
    base_delay_ms: int
    max_delay_ms: int
    min_uptime_ms: int
    max_restarts: int
    max_memory_bytes: int  # 0 = no limit

    @classmethod
    def for_role(cls, settings: Settings, role: Role) -> RestartPolicy:
        """The policy the settings give ``role``."""
        return cls(
            role=role,
            base_delay_ms=settings.restart_delay_for(role),
            max_delay_ms=settings.restart_delay_max,
            min_uptime_ms=settings.min_uptime_for(role),
            max_restarts=settings.max_restarts_for(role),
            max_memory_bytes=settings.max_memory_for(role),
        )

    def delay_ms(self, restart_number: int) -> int:
        """Delay before the ``restart_number``-th restart in a row (1-based): base * 2^(n-1), capped."""
        exponent = max(0, restart_number - 1)
        return int(min(self.base_delay_ms * 2 ** min(exponent, 32), self.max_delay_ms))

    def was_stable(self, uptime_s: float) -> bool:
        """A child that stayed ready ``min_uptime`` resets the restarts-in-a-row count."""
        return uptime_s * 1000 >= self.min_uptime_ms

    def gives_up_after(self, restarts_in_a_row: int) -> bool:
        """Whether a child that already had ``restarts_in_a_row`` restarts in a row is given up now."""
        return restarts_in_a_row >= self.max_restarts

    @property
    def fatal_on_give_up(self) -> bool:
        """Without the api nothing is reachable: giving it up stops the whole orchestrator."""
        return self.role == "api"
