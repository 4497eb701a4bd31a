"""Group operations carried out by a session's owner: a ``group`` session command → the driver → JSON.

The API queues a ``group`` command (``args.op`` says which operation, the other members are
its arguments, checked by the API first); the process that drives the session runs it on
the driver here and stores the answer as the command's result. The JSON shapes are the
groups API's (camelCase), so the API passes them on unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, get_args

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.engines.wwebjs.driver import (
    DriverSession,
    GroupChanges,
    GroupInfo,
    MediaSource,
    ParticipantAction,
    ParticipantResult,
)
from bisnesgpt.engines.wwebjs.driver_errors import GroupRefused

GroupOp = Literal["list", "info", "create", "participants", "update", "invite", "join", "leave", "picture"]
PictureAction = Literal["get", "set", "remove"]
GROUP_OPS: tuple[GroupOp, ...] = get_args(GroupOp)
PARTICIPANT_ACTIONS: tuple[ParticipantAction, ...] = get_args(ParticipantAction)


def group_json(group: GroupInfo, *, full: bool) -> JsonObject:
    """A group for the API: the summary of a list, or everything (participants with roles, settings)."""
    view: JsonObject = {"id": group.id, "subject": group.subject, "participantsCount": len(group.participants),
                        "isAdmin": group.is_admin}
    if full:
        view.update({
            "description": group.description, "owner": group.owner, "createdAt": group.created_at,
            "settings": {"announce": group.announce, "locked": group.locked},
            "participants": [{"number": m.number, "lid": m.lid, "role": m.role} for m in group.participants],
            "inviteLink": group.invite_link if group.is_admin else None})
    return view


def results_json(results: list[ParticipantResult]) -> list[JsonValue]:
    """Per-participant outcomes for the API."""
    return [{"number": r.number, "outcome": r.outcome} for r in results]


def _strings(args: JsonObject, name: str) -> list[str]:
    value = args.get(name)
    return [str(v) for v in value] if isinstance(value, list) else []


def _text(args: JsonObject, name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise GroupRefused(f"'{name}' is required", code="BAD_GROUP_REQUEST")
    return value


def _flag(args: JsonObject, name: str) -> bool | None:
    value = args.get(name)
    return value if isinstance(value, bool) else None


async def _list(session: DriverSession, _args: JsonObject) -> JsonObject:
    return {"groups": [group_json(g, full=False) for g in await session.groups()]}


async def _create(session: DriverSession, args: JsonObject) -> JsonObject:
    subject = _text(args, "subject")
    group, results = await session.create_group(subject, _strings(args, "participants"))
    return {"group": group_json(group, full=True), "participants": results_json(results)}


async def _join(session: DriverSession, args: JsonObject) -> JsonObject:
    invite = _text(args, "invite")
    return {"groupId": await session.join_group(invite)}


async def _info(session: DriverSession, args: JsonObject) -> JsonObject:
    group_id = _text(args, "groupId")
    return {"group": group_json(await session.group_info(group_id), full=True)}


async def _participants(session: DriverSession, args: JsonObject) -> JsonObject:
    group_id = _text(args, "groupId")
    action = next((a for a in PARTICIPANT_ACTIONS if a == args.get("action")), None)
    if action is None:
        raise GroupRefused(f"'action' must be one of {', '.join(PARTICIPANT_ACTIONS)}", code="BAD_GROUP_REQUEST")
    results = await session.update_participants(group_id, action, _strings(args, "participants"))
    return {"groupId": group_id, "action": action, "participants": results_json(results)}


async def _update(session: DriverSession, args: JsonObject) -> JsonObject:
    subject, description = args.get("subject"), args.get("description")
    changes = GroupChanges(subject=subject if isinstance(subject, str) else None,
                           description=description if isinstance(description, str) else None,
                           announce=_flag(args, "announce"), locked=_flag(args, "locked"))
    group_id = _text(args, "groupId")
    return {"group": group_json(await session.update_group(group_id, changes), full=True)}


async def _invite(session: DriverSession, args: JsonObject) -> JsonObject:
    group_id = _text(args, "groupId")
    return {"groupId": group_id, "inviteLink": await session.invite_link(group_id, revoke=bool(args.get("revoke")))}


async def _leave(session: DriverSession, args: JsonObject) -> JsonObject:
    group_id = _text(args, "groupId")
    await session.leave_group(group_id)
    return {"groupId": group_id, "left": True}


async def _picture(session: DriverSession, args: JsonObject) -> JsonObject:
    """``action`` get (its URL), set (``link``: an image URL, fetched by this process) or remove."""
    group_id = _text(args, "groupId")
    action = args.get("action")
    if action == "set":
        picture_id = await session.set_group_picture(group_id, MediaSource(url=_text(args, "link")))
        return {"groupId": group_id, "pictureId": picture_id, "pictureUrl": await session.group_picture(group_id)}
    if action == "remove":
        await session.remove_group_picture(group_id)
        return {"groupId": group_id, "pictureUrl": None}
    if action == "get":
        return {"groupId": group_id, "pictureUrl": await session.group_picture(group_id)}
    raise GroupRefused("'action' must be get, set or remove", code="BAD_GROUP_REQUEST")


OPERATIONS: dict[GroupOp, Callable[[DriverSession, JsonObject], Awaitable[JsonObject]]] = {
    "list": _list, "create": _create, "join": _join, "info": _info, "participants": _participants,
    "update": _update, "invite": _invite, "leave": _leave, "picture": _picture}


async def run_group_op(session: DriverSession, args: JsonObject) -> JsonObject:
    """Carry out the group operation ``args`` describes on ``session``; its answer for the API."""
    operation = next((fn for op, fn in OPERATIONS.items() if op == args.get("op")), None)
    if operation is None:
        raise GroupRefused(f"unknown group operation {args.get('op')!r}", code="BAD_GROUP_REQUEST")
    return await operation(session, args)
