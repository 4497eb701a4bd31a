"""What the sandboxes' admin routes share: how their JSON bodies and answers are typed and documented.

The routes answer with their own ``JSONResponse`` (typed records inside), so FastAPI never
validates an answer; ``AN_OBJECT``, ``OBJECTS`` and ``ANYTHING`` only tell the OpenAPI page
that the answer is an object, a list of objects, or either an answer or a problem. A body
FastAPI parsed for a ``dict[str, object]`` parameter is decoded JSON, which ``decoded`` says
to the type checker.
"""

from __future__ import annotations

from typing import cast

from bisnesgpt.core.jsontypes import JsonObject

AN_OBJECT = dict[str, object]
OBJECTS = list[dict[str, object]]
ANYTHING = object


def decoded(body: dict[str, object]) -> JsonObject:
    """A request body FastAPI decoded from JSON, as the JSON document it is."""
    return cast(JsonObject, body)
