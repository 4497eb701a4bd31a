"""The small types settings are made of: roles, ports, durations, memory sizes."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

Role = Literal["api", "wwebjs", "meta", "legacy"]
ROLES: tuple[Role, ...] = ("api", "wwebjs", "meta", "legacy")
ENGINE_ROLES: tuple[Role, ...] = ("api", "wwebjs", "meta")

Port = Annotated[int, Field(ge=0, le=65535)]
Millis = Annotated[int, Field(ge=1)]
_MEMORY_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_memory_size(value: Any) -> Any:
    """PM2-style sizes ("2G", "512M", "300K", plain bytes) -> bytes; 0 means "no limit"."""
    if isinstance(value, str):
        match = _MEMORY_SIZE.match(value)
        if match is None:
            raise ValueError("must be a size like 2G, 512M, 300K or a number of bytes")
        return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).upper()])
    return value


MemorySize = Annotated[int, BeforeValidator(parse_memory_size), Field(ge=0)]
