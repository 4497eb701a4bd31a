"""Groups on the sandbox network: membership, admins, settings, invite links, and their notifications.

A group is recorded whole (``Records.save_group``): subject, description, owner, each
participant's role (``member``/``admin``/``superadmin``), announcement-only (only admins
send) and locked info (only admins change subject, description and picture), its invite code
and its picture (an upload to the network's media server).
A session acts as the phone its device is linked to; other phones are numbers, driven
through the admin API (``act``) as if someone did it on their phone.

Every change is a notification (``group_participants``, ``group_updated``) recorded as an
inbound message for each member session — pushed now when ready, redelivered until the
client confirms it, exactly like a message. Numbers the sandbox has nobody for (see
``config.not_on_whatsapp``) cannot be added; numbers ending in 403 have privacy settings
that refuse being added by others (``privacy_blocked``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.sandbox.jsonvalues import as_strings, as_text
from bisnesgpt.sandbox.wweb import protocol as p
from bisnesgpt.sandbox.wweb.config import not_on_whatsapp
from bisnesgpt.sandbox.wweb.switchboard import NetworkError, Switchboard

PRIVACY_BLOCKED_SUFFIX = "403"
ROLES = ("member", "admin", "superadmin")
ACTIONS = {"add": "joined", "remove": "left", "promote": "promoted", "demote": "demoted"}
SETTINGS = ("subject", "description", "announce", "locked")


class GroupFault(Exception):
    """A group operation WhatsApp would refuse: ``code`` (protocol error code) and why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _digits(value: JsonValue) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


def _participants(body: JsonObject) -> dict[str, str]:
    found = body.get("participants")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _invite_code(given: str) -> str:
    """The code of an invite link (or the code itself)."""
    return given.strip().removeprefix(p.INVITE_PREFIX).strip("/")


@dataclass(eq=False)
class Groups:
    """The group operations of sessions (``operate``) and of other phones (``act``)."""

    board: Switchboard

    # --- what a session asks (the ``group`` frame) -------------------------------------------------

    async def operate(self, session: str, frame: JsonObject) -> JsonObject:
        """Carry out one ``group`` frame for the session's phone; its result (GroupFault when refused)."""
        me = self.board.records.linked_phones().get(session)
        if me is None:
            raise GroupFault(p.NOT_READY, "the session has no linked device")
        op = str(frame.get("op") or "")
        if op == "list":
            return {"groups": [self.view(row["id"], row["body"], me, full=False)
                               for row in self.board.records.groups() if me in _participants(row["body"])]}
        if op == "create":
            return await self._create(me, str(frame.get("subject") or ""), as_strings(frame.get("participants") or []))
        if op == "join":
            return await self._join(me, str(frame.get("invite") or ""))
        return await self._on_group(me, op, str(frame.get("group") or ""), frame)

    async def _on_group(self, me: str, op: str, group_id: str, frame: JsonObject) -> JsonObject:
        """An operation on one group the session's phone is in."""
        body = self._member_group(group_id, me)
        if op == "info":
            return {"group": self.view(group_id, body, me, full=True)}
        if op == "participants":
            return await self._participants(group_id, body, me, str(frame.get("action") or ""),
                                            as_strings(frame.get("participants") or []))
        if op == "update":
            changes = frame.get("changes")
            return await self._update(group_id, body, me, changes if isinstance(changes, dict) else {})
        if op == "invite":
            return await self._invite(group_id, body, me, revoke=bool(frame.get("revoke")))
        if op == "leave":
            await self.change_members(group_id, body, "left", [me], by=me)
            return {"left": group_id}
        if op == "picture":
            media = frame.get("media")
            return self._picture(group_id, body, me, str(frame.get("action") or ""),
                                 media if isinstance(media, dict) else {})
        raise GroupFault(p.BAD_REQUEST, f"unknown group operation {op!r}")

    def _picture(self, group_id: str, body: JsonObject, me: str, action: str, media: JsonObject) -> JsonObject:
        """get / set (an uploaded image: ``media.handle``) / remove the group's picture (admins when locked)."""
        if action == "get":
            return {"picture": body.get("picture"), "pictureId": body.get("pictureId")}
        if action not in ("set", "remove"):
            raise GroupFault(p.BAD_REQUEST, f"unknown picture action {action!r}: get, set or remove")
        if body.get("locked"):
            self._require_admin(group_id, body, me)
        if action == "remove":
            self.board.records.save_group(group_id, {**body, "picture": None, "pictureId": None})
            return {"picture": None, "pictureId": None}
        upload = self.board.records.media(str(media.get("handle") or ""))
        if upload is None:
            raise GroupFault(p.BAD_REQUEST, "the picture was not uploaded to the media server first")
        if not str(upload["mime"]).startswith("image/"):
            raise GroupFault(p.BAD_REQUEST, f"a group picture is an image, not {upload['mime']}")
        picture_id = str(int(time.time() * 1000))
        self.board.records.save_group(group_id, {**body, "picture": upload["handle"], "pictureId": picture_id})
        return {"picture": upload["handle"], "pictureId": picture_id}

    def _member_group(self, group_id: str, me: str) -> JsonObject:
        row = self.board.records.group(group_id)
        if row is None:
            raise GroupFault(p.GROUP_NOT_FOUND, f"no group {group_id}")
        if me not in _participants(row["body"]):
            raise GroupFault(p.NOT_IN_GROUP, f"{me} is not in group {group_id}")
        return row["body"]

    @staticmethod
    def _require_admin(group_id: str, body: JsonObject, me: str) -> None:
        if _participants(body).get(me) not in ("admin", "superadmin"):
            raise GroupFault(p.NOT_GROUP_ADMIN, f"{me} is not an admin of group {group_id}")

    async def _create(self, me: str, subject: str, numbers: list[str]) -> JsonObject:
        if not subject.strip() or len(subject) > 100:
            raise GroupFault(p.BAD_REQUEST, "a group needs a subject of 1 to 100 characters")
        group_id = f"120363{secrets.randbelow(10**12):012d}@g.us"
        body: JsonObject = {"subject": subject, "description": None, "owner": me, "createdAt": time.time(),
                            "announce": False, "locked": False, "invite": secrets.token_urlsafe(16),
                            "participants": {me: "superadmin"}}
        self.board.records.save_group(group_id, body)
        results = await self._participants(group_id, body, me, "add", numbers)
        row = self.board.records.group(group_id)
        assert row is not None
        return {"group": self.view(group_id, row["body"], me, full=True), "participants": results["participants"]}

    async def _participants(self, group_id: str, body: JsonObject, me: str, action: str,
                            numbers: list[str]) -> JsonObject:
        if action not in ACTIONS:
            raise GroupFault(p.BAD_REQUEST, f"unknown participants action {action!r}")
        self._require_admin(group_id, body, me)
        members = _participants(body)
        results: list[JsonValue] = []
        changed: list[str] = []
        for number in (_digits(n) for n in numbers):
            outcome: str
            if action == "add":
                if not number or not_on_whatsapp(number, self.board.config.not_on_whatsapp):
                    outcome = "not_on_whatsapp"
                elif number.endswith(PRIVACY_BLOCKED_SUFFIX):
                    outcome = "privacy_blocked"
                elif number in members:
                    outcome = "already_in_group"
                else:
                    outcome = "added"
            elif number not in members:
                outcome = "not_in_group"
            elif members[number] == "superadmin" and number != me:
                outcome = "failed"  # nobody removes or demotes the group's creator
            else:
                outcome = {"remove": "removed", "promote": "promoted", "demote": "demoted"}[action]
            if outcome in ("added", "removed", "promoted", "demoted"):
                changed.append(number)
            results.append({"number": number, "outcome": outcome})
        if changed:
            await self.change_members(group_id, body, ACTIONS[action], changed, by=me)
        return {"participants": results}

    async def _update(self, group_id: str, body: JsonObject, me: str, changes: JsonObject) -> JsonObject:
        wanted: JsonObject = {k: v for k, v in changes.items() if k in SETTINGS and v is not None}
        if not wanted:
            raise GroupFault(p.BAD_REQUEST, f"nothing to change: give one of {', '.join(SETTINGS)}")
        if "announce" in wanted or "locked" in wanted or body.get("locked"):
            self._require_admin(group_id, body, me)
        await self.change_settings(group_id, body, wanted, by=me)
        row = self.board.records.group(group_id)
        assert row is not None
        return {"group": self.view(group_id, row["body"], me, full=True)}

    async def _invite(self, group_id: str, body: JsonObject, me: str, *, revoke: bool) -> JsonObject:
        self._require_admin(group_id, body, me)
        if revoke:
            body = {**body, "invite": secrets.token_urlsafe(16)}
            self.board.records.save_group(group_id, body)
        return {"inviteLink": p.INVITE_PREFIX + str(body.get("invite"))}

    async def _join(self, me: str, invite: str) -> JsonObject:
        code = _invite_code(invite)
        for row in self.board.records.groups():
            if code and row["body"].get("invite") == code:
                if me not in _participants(row["body"]):
                    await self.change_members(row["id"], row["body"], "joined", [me], by=me)
                return {"group": row["id"]}
        raise GroupFault(p.INVITE_INVALID, "the invite link is invalid or was revoked")

    # --- changes and their notifications ---------------------------------------------------------------

    async def change_members(self, group_id: str, body: JsonObject, change: str, numbers: list[str], *,
                             by: str | None) -> None:
        """Apply joined/left/promoted/demoted and notify the members (those who left hear it too)."""
        members = _participants(body)
        before = set(members)
        for number in numbers:
            if change == "joined":
                members[number] = "member"
            elif change == "left":
                members.pop(number, None)
            elif change == "promoted":
                members[number] = "admin"
            elif number in members:
                members[number] = "member"
        self.board.records.save_group(group_id, {**body, "participants": dict(members)})
        await self.notify(group_id, before | set(members), p.GROUP_PARTICIPANTS,
                          {"group": group_id, "change": change, "participants": list(numbers), "by": by})

    async def change_settings(self, group_id: str, body: JsonObject, changes: JsonObject, *, by: str | None) -> None:
        """Store new subject/description/settings and notify the members."""
        self.board.records.save_group(group_id, {**body, **changes})
        await self.notify(group_id, set(_participants(body)), p.GROUP_UPDATED,
                          {"group": group_id, "changes": changes, "by": by})

    async def notify(self, group_id: str, numbers: set[str], kind: str, content: JsonObject) -> None:
        """Record the notification for every linked session whose phone is one of ``numbers``; push it."""
        records = self.board.records
        for session, phone in records.linked_phones().items():
            if phone not in numbers:
                continue
            notification_id = "GN" + secrets.token_hex(10).upper()
            records.record_inbound(session, notification_id, group_id, kind,
                                   {**content, "from": str(content.get("by") or "")})
            conn = self.board.ready_connection(session)
            stored = records.message(session, notification_id)
            if conn is not None and stored is not None:
                await self.board.push_inbound(conn, stored)

    # --- what other phones do (the admin API) ----------------------------------------------------------

    async def act(self, group_id: str, body: JsonObject) -> JsonObject:
        """Someone does something on their phone: ``{by, action: add|remove|promote|demote|join|leave|update,
        participants?, changes?}`` (``create`` with ``subject`` and ``participants`` makes a new group, ``by`` its
        owner)."""
        by = _digits(body.get("by"))
        if not by:
            raise NetworkError(400, "'by' (the phone number doing it) is required")
        action = str(body.get("action") or "")
        if action == "create":
            group_id = group_id if group_id.endswith("@g.us") else f"120363{secrets.randbelow(10**12):012d}@g.us"
            members = {by: "superadmin", **{_digits(n): "member" for n in as_strings(body.get("participants") or [])}}
            state: JsonObject = {"subject": as_text(body.get("subject")) or "Sandbox group", "description": None,
                                 "owner": by, "createdAt": time.time(), "announce": False, "locked": False,
                                 "invite": secrets.token_urlsafe(16), "participants": {by: "superadmin"}}
            self.board.records.save_group(group_id, state)
            await self.change_members(group_id, state, "joined", [n for n in members if n != by], by=by)
            return self.view(group_id, self._body(group_id), by, full=True)
        current = self._body(group_id)
        if action in ("join", "leave"):
            await self.change_members(group_id, current, "joined" if action == "join" else "left", [by], by=by)
        elif action in ACTIONS:
            numbers = [_digits(n) for n in as_strings(body.get("participants") or [])]
            await self.change_members(group_id, current, ACTIONS[action], numbers, by=by)
        elif action == "update":
            changes = body.get("changes")
            wanted = {k: v for k, v in changes.items() if k in SETTINGS} if isinstance(changes, dict) else {}
            if not wanted:
                raise NetworkError(400, f"update needs 'changes' with one of {', '.join(SETTINGS)}")
            await self.change_settings(group_id, current, wanted, by=by)
        else:
            raise NetworkError(400, f"unknown action {action!r}: create, join, leave, add, remove, promote, "
                                    "demote or update")
        return self.view(group_id, self._body(group_id), by, full=True)

    def _body(self, group_id: str) -> JsonObject:
        row = self.board.records.group(group_id)
        if row is None:
            raise NetworkError(404, f"no group {group_id}")
        return row["body"]

    # --- checks on sends and views ---------------------------------------------------------------------

    def send_refusal(self, session: str, group_id: str) -> tuple[str, str] | None:
        """Why the session's phone may not send to the group now (None: it may)."""
        me = self.board.records.linked_phones().get(session)
        row = self.board.records.group(group_id)
        if row is None:
            return p.NOT_IN_GROUP, f"no group {group_id}"
        role = _participants(row["body"]).get(me or "")
        if role is None:
            return p.NOT_IN_GROUP, f"{me} is not in group {group_id}"
        if row["body"].get("announce") and role not in ("admin", "superadmin"):
            return p.NOT_GROUP_ADMIN, f"group {group_id} is announcement-only: only admins send"
        return None

    @staticmethod
    def view(group_id: str, body: JsonObject, me: str | None, *, full: bool) -> JsonObject:
        """The group as the wire (and the admin API) shows it; the invite link only to admins, only in full."""
        members = _participants(body)
        is_admin = members.get(me or "") in ("admin", "superadmin")
        view: JsonObject = {"id": group_id, "subject": body.get("subject"), "description": body.get("description"),
                            "owner": body.get("owner"), "createdAt": body.get("createdAt"),
                            "announce": bool(body.get("announce")), "locked": bool(body.get("locked")),
                            "isAdmin": is_admin, "size": len(members), "picture": body.get("picture"),
                            "participants": [{"number": n, "lid": p.lid_of(n), "role": r} for n, r in members.items()]}
        if full and is_admin:
            view["inviteLink"] = p.INVITE_PREFIX + str(body.get("invite"))
        return view
