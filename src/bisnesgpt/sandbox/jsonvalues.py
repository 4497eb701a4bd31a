"""Python's own conversions (``float()``, ``int()``, ``str()``) for values of a JSON document.

The sandboxes' admin APIs take loosely typed JSON and convert each setting as Python's
built-ins would. These helpers do the same for a ``JsonValue``, so the type checker knows
what comes out, and fail with the built-ins' own ``TypeError``/``ValueError`` text (the
admin routes answer it in their 400s).
"""

from __future__ import annotations

from bisnesgpt.core.jsontypes import JsonValue


def as_float(value: JsonValue) -> float:
    """``float(value)``: numbers and numeric strings; anything else is the built-in's TypeError."""
    if isinstance(value, str | int | float):
        return float(value)
    raise TypeError(f"float() argument must be a string or a real number, not '{type(value).__name__}'")


def as_int(value: JsonValue) -> int:
    """``int(value)``: numbers (truncated) and digit strings; anything else is the built-in's TypeError."""
    if isinstance(value, str | int | float):
        return int(value)
    raise TypeError(f"int() argument must be a string, a bytes-like object or a real number, "
                    f"not '{type(value).__name__}'")


def as_strings(value: JsonValue) -> list[str]:
    """``[str(v) for v in value]``: a list's items (a string gives its characters, an object its keys)."""
    if isinstance(value, list | str | dict):
        return [str(item) for item in value]
    raise TypeError(f"'{type(value).__name__}' object is not iterable")


def as_text(value: JsonValue) -> str | None:
    """A setting that is text or unset: None stays None, anything else becomes its ``str()``."""
    return None if value is None else str(value)
