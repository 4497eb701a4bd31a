"""JSON a provider sent us, made storable in PostgreSQL without losing anything.

PostgreSQL's ``text`` and ``jsonb`` cannot hold NUL (U+0000), and a lone UTF-16 surrogate cannot
even be encoded as UTF-8. A signed webhook is not the client's mistake to refuse: its strings
are kept with those characters replaced by U+FFFD, and each object that had such a member keeps
the originals beside them, JSON-escaped (ASCII only), under ``escaped_original``:
``{"body": "hi\\ufffd", "escaped_original": {"body": "\\"hi\\\\u0000\\""}}`` —
``json.loads`` of an escaped value gives back the original string exactly. A member whose
*name* had to change keeps ``{original name: original value}`` as one JSON text instead.
"""

from __future__ import annotations

import json
import re

from bisnesgpt.core.jsontypes import JsonValue

ESCAPED_KEY = "escaped_original"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def has_unstorable(text: str) -> bool:
    """Whether ``text`` holds a NUL or a lone surrogate."""
    return _UNSTORABLE.search(text) is not None


def storable(value: JsonValue) -> JsonValue:
    """``value`` with every string PostgreSQL can store (see module docstring); unchanged if it already was."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        out: dict[str, JsonValue] = {}
        escaped: dict[str, JsonValue] = {}
        for key, item in value.items():
            clean_key = _UNSTORABLE.sub(REPLACEMENT, key)
            if clean_key != key:
                escaped[clean_key] = json.dumps({key: item}, ensure_ascii=True)
            elif isinstance(item, str) and has_unstorable(item):
                escaped[clean_key] = json.dumps(item, ensure_ascii=True)
            out[clean_key] = storable(item)
        if escaped:
            out[ESCAPED_KEY] = escaped
        return out
    return value
