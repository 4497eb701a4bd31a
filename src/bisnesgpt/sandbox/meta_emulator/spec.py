"""Request validation against Meta's own OpenAPI description of the Cloud API.

``spec/business-messaging-api_v23.0.yaml`` is Meta's description (MIT, see ``spec/LICENSE``),
shipped unchanged. A send is validated against its **message-type schema**
(``TextMessage``, ``ImageMessage``, …), chosen by ``type``: the description combines the
common envelope (``BaseMessageProperties``) and each type's object with ``allOf`` plus
``additionalProperties: false``, which no valid body can pass literally, so the two parts
are merged into one object schema first (properties and required lists united, extra
properties still refused).

Where Meta's own request examples contradict the schemas, the Cloud API accepts the
examples; ``OVERLAY`` relaxes exactly those points, each for a stated reason:

1. ``recipient_type`` may be omitted (defaults to ``individual``) and ``type`` may be
   omitted (inferred from the one message object present, else ``text``) — several
   examples omit them;
2. location ``latitude``/``longitude`` may be numbers (the examples and Meta's docs send
   numbers; the schema says string);
3. a template's ``language.policy`` may be omitted (defaults to ``deterministic``);
4. a template button's ``index`` may be an integer or any digit string, and ``sub_type``
   is case-insensitive and includes Meta's other button types (``flow``, ``copy_code``…);
5. interactive ``order_details``/``order_status`` (Meta's payments messages) exist.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from importlib import resources

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from bisnesgpt.core.jsontypes import JsonObject, JsonValue

SPEC_FILE = "business-messaging-api_v23.0.yaml"
MESSAGES_PATH = "/{Version}/{Phone-Number-ID}/messages"
TYPE_KEYS = ("text", "image", "audio", "video", "document", "sticker", "location", "contacts", "interactive",
             "template", "reaction")
BUTTON_SUB_TYPES = "quick_reply|url|catalog|flow|copy_code|voice_call|mpm|order_details|otp|spm"


def load_spec() -> JsonObject:
    """Meta's OpenAPI document, parsed (about a second; cached by callers)."""
    text = resources.files("bisnesgpt.sandbox.meta_emulator").joinpath("spec", SPEC_FILE).read_text("utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    return _object(document)


def _at(node: JsonValue, *path: str | int) -> JsonValue:
    """The part of a JSON document at ``path`` (object keys and array indexes)."""
    for step in path:
        if isinstance(node, dict) and isinstance(step, str):
            node = node[step]
            continue
        if isinstance(node, list) and isinstance(step, int):
            node = node[step]
            continue
        raise TypeError(f"the document has no {step!r} here")
    return node


def _object(node: JsonValue, *path: str | int) -> JsonObject:
    """The object at ``path``: Meta's document has one there, or it is not the document we ship."""
    found = _at(node, *path)
    if not isinstance(found, dict):
        raise TypeError(f"expected an object at {'/'.join(map(str, path)) or 'the top'}")
    return found


def _array(node: JsonValue, *path: str | int) -> list[JsonValue]:
    """The array at ``path`` (see ``_object``)."""
    found = _at(node, *path)
    if not isinstance(found, list):
        raise TypeError(f"expected an array at {'/'.join(map(str, path))}")
    return found


def _examples(document: JsonObject, path: str) -> JsonObject:
    content = _object(document, "paths", path, "post", "requestBody", "content", "application/json")
    return {name: _object(example)["value"] for name, example in _object(content, "examples").items()}


def request_examples(document: JsonObject) -> JsonObject:
    """The request examples of ``POST /{Version}/{Phone-Number-ID}/messages``, by name."""
    return _examples(document, MESSAGES_PATH)


def webhook_examples(document: JsonObject) -> JsonObject:
    """The webhook payload examples of ``POST /whatsapp/webhooks``, by name."""
    return _examples(document, "/whatsapp/webhooks")


def _overlay(schemas: JsonObject) -> None:
    """Apply the documented relaxations (module docstring, points 2 to 5) in place."""
    location = _object(schemas, "LocationMessage", "allOf", 1, "properties", "location", "properties")
    for axis in ("latitude", "longitude"):
        location[axis] = {**_object(location, axis), "type": ["number", "string"]}
    _object(schemas, "LanguageObject")["required"] = ["code"]
    component = _object(schemas, "TemplateComponent", "properties")
    component["index"] = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 0}
    component["sub_type"] = {"type": "string", "pattern": f"(?i)^({BUTTON_SUB_TYPES})$"}
    interactive_type = _object(schemas, "InteractiveObject", "properties", "type")
    interactive_type["enum"] = [*_array(interactive_type, "enum"), "order_details", "order_status"]
    _array(schemas, "ActionObject", "oneOf").append({
        "required": ["name", "parameters"],
        "properties": {"name": {"type": "string", "enum": ["review_and_pay", "review_order"]},
                       "parameters": {"type": "object"}},
    })


def _merged(schemas: JsonObject, name: str) -> JsonObject:
    """One object schema from ``allOf: [BaseMessageProperties, {…type-specific…}]``."""
    properties: JsonObject = {}
    required: list[str] = []
    closed = False
    for piece in _array(schemas, name, "allOf"):
        part = _object(piece)
        if "$ref" in part:
            part = _object(schemas, str(part["$ref"]).rsplit("/", 1)[-1])
        properties.update(_object(part.get("properties", {})))
        required.extend(str(key) for key in _array(part.get("required", [])))
        closed = closed or part.get("additionalProperties") is False
    merged: JsonObject = {"type": "object", "properties": properties,
                          "required": [key for key in sorted(set(required))]}
    if closed:
        merged["additionalProperties"] = False
    return merged


@dataclass(frozen=True)
class Problem:
    """Why a body is invalid, in Graph terms (code 100, a human-readable detail)."""

    detail: str
    path: str


class MessageValidator:
    """Validates send and mark-as-read bodies; built once per emulator."""

    def __init__(self, document: JsonObject | None = None) -> None:
        document = copy.deepcopy(document) if document is not None else load_spec()
        components = _object(document, "components")
        schemas = _object(components, "schemas")
        _overlay(schemas)
        mapping = _object(schemas, "Message", "discriminator", "mapping")
        self._validators: dict[str, Draft202012Validator] = {}
        root: JsonObject = {"components": components}
        for kind, ref in mapping.items():
            name = str(ref).rsplit("/", 1)[-1]
            schemas[f"x-merged-{name}"] = _merged(schemas, name)
            self._validators[kind] = Draft202012Validator({**root, "$ref": f"#/components/schemas/x-merged-{name}"})
        self._mark_read = Draft202012Validator({**root, "$ref": "#/components/schemas/MarkMessageRequestPayload"})

    @staticmethod
    def is_mark_as_read(body: JsonObject) -> bool:
        """A ``status`` + ``message_id`` body with no message object is mark-as-read, not a send."""
        return "status" in body and "message_id" in body and not any(key in body for key in TYPE_KEYS)

    @staticmethod
    def with_defaults(body: JsonObject) -> JsonObject:
        """The body with Meta's defaults for ``recipient_type`` and ``type`` filled in."""
        filled = dict(body)
        filled.setdefault("recipient_type", "individual")
        if "type" not in filled:
            present = [key for key in TYPE_KEYS if key in filled]
            filled["type"] = present[0] if len(present) == 1 else "text"
        return filled

    def validate(self, body: JsonObject) -> Problem | None:
        """None if valid; otherwise the most relevant problem."""
        if self.is_mark_as_read(body):
            return _first_problem(self._mark_read, body)
        kind = str(body.get("type"))
        validator = self._validators.get(kind)
        if validator is None:
            return Problem(f"Param type must be one of {{{', '.join(sorted(self._validators))}}} - got \"{kind}\"",
                           "type")
        return _first_problem(validator, body)

    @property
    def message_types(self) -> list[str]:
        """The ``type`` values a send may have (the schema's discriminator mapping)."""
        return sorted(self._validators)


def _first_problem(validator: Draft202012Validator, body: JsonObject) -> Problem | None:
    error = best_match(validator.iter_errors(body))
    if error is None:
        return None
    path = ".".join(str(part) for part in error.absolute_path) or "(body)"
    return Problem(f"{path}: {error.message[:300]}", path)


@functools.cache
def default_validator() -> MessageValidator:
    """The validator over the shipped document, built once per process (it takes about a second)."""
    return MessageValidator()
