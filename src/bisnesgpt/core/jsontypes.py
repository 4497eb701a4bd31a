"""JSON documents as types: what ``json.loads`` can return, recursively.

For documents the product stores or forwards without relying on their shape (a
provider's raw payload, a webhook body): reading into one needs ``isinstance`` narrowing,
which is the point. Data with known keys gets a ``TypedDict`` or a dataclass instead.
"""

from __future__ import annotations

from typing import TypeAlias

JsonScalar: TypeAlias = str | int | float | bool | None
JsonValue: TypeAlias = "JsonScalar | list[JsonValue] | dict[str, JsonValue]"
JsonObject: TypeAlias = "dict[str, JsonValue]"
