"""Python's own conversions (``float()``, ``int()``, ``str()``) for values of a JSON document.

The sandboxes' admin APIs take loosely typed JSON and convert each setting as Python's
built-ins would. These helpers do the same for a ``JsonValue``, so the type checker knows
what comes out, and fail with the built-ins' own ``TypeError``/``ValueError`` text (the
admin routes answer it in their 400s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bisnesgpt.core.jsontypes import JsonObject, JsonValue

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


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


def update_settings(settings: DataclassInstance, changes: JsonObject) -> None:
    """Set each named field of a settings dataclass to its value converted as the field's current value is typed.

    A bool, int, float or list of strings takes ``bool()``/``int()``/``float()``/``as_strings``;
    text or unset takes ``as_text``. An unknown name is a KeyError, a bad value the conversion's
    TypeError/ValueError (the admin routes answer both with a 400).
    """
    for name, value in changes.items():
        if name not in settings.__dataclass_fields__:
            raise KeyError(name)
        current = getattr(settings, name)
        converted: object
        if isinstance(current, bool):  # before int: a bool is an int
            converted = bool(value)
        elif isinstance(current, int):
            converted = as_int(value)
        elif isinstance(current, float):
            converted = as_float(value)
        elif isinstance(current, list):
            converted = as_strings(value)
        else:
            converted = as_text(value)
        setattr(settings, name, converted)
