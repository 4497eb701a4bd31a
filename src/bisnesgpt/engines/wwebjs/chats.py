"""Chat operations carried out by a session's owner: a ``chat`` session command → the driver → JSON.

The conversation API (read receipts, "typing…" / "recording audio…", on-WhatsApp checks)
queues a ``chat`` command (``args.op``: ``read``, ``typing`` or ``check``, its arguments
checked by the API first); the process that drives the session runs it on its driver here
and stores the answer as the command's result, like group operations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, get_args

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.engines.wwebjs.driver import DriverSession, ReadMessage, TypingState
from bisnesgpt.engines.wwebjs.driver_errors import GroupRefused

ChatOp = Literal["read", "typing", "check"]
CHAT_OPS: tuple[ChatOp, ...] = get_args(ChatOp)
TYPING_STATES: tuple[TypingState, ...] = get_args(TypingState)


def _refused(detail: str) -> GroupRefused:
    return GroupRefused(detail, code="BAD_CHAT_REQUEST")


def _chat(args: JsonObject) -> str:
    chat = args.get("chat")
    if not isinstance(chat, str) or not chat:
        raise _refused("'chat' is required")
    return chat


async def _read(session: DriverSession, args: JsonObject) -> JsonObject:
    chat = _chat(args)
    listed = args.get("messages")
    messages = [ReadMessage(str(m["id"]), str(m["sender"]) if m.get("sender") else None)
                for m in (listed if isinstance(listed, list) else []) if isinstance(m, dict) and m.get("id")]
    if messages:
        await session.mark_read(chat, messages)
    return {"chat": chat, "receipts": len(messages)}


async def _typing(session: DriverSession, args: JsonObject) -> JsonObject:
    chat = _chat(args)
    state = next((s for s in TYPING_STATES if s == args.get("state")), None)
    if state is None:
        raise _refused(f"'state' must be one of {', '.join(TYPING_STATES)}")
    await session.typing(chat, state)
    return {"chat": chat, "state": state}


async def _check(session: DriverSession, args: JsonObject) -> JsonObject:
    listed = args.get("numbers")
    numbers = [str(n) for n in listed] if isinstance(listed, list) else []
    if not numbers:
        raise _refused("'numbers' is required")
    answers = await session.check_numbers(numbers)
    return {"numbers": {n: bool(answers.get(n)) for n in numbers}}


OPERATIONS: dict[ChatOp, Callable[[DriverSession, JsonObject], Awaitable[JsonObject]]] = {
    "read": _read, "typing": _typing, "check": _check}


async def run_chat_op(session: DriverSession, args: JsonObject) -> JsonObject:
    """Carry out the chat operation ``args`` describes on ``session``; its answer for the API."""
    operation = next((fn for op, fn in OPERATIONS.items() if op == args.get("op")), None)
    if operation is None:
        raise _refused(f"unknown chat operation {args.get('op')!r}")
    return await operation(session, args)
