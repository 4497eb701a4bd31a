"""whatsmeow's groups as the driver's: group info, per-participant results, group events, JIDs.

Pure translations of neonize's protobuf records (``GroupInfo``, the participants change
answer, ``GroupInfoEvent``) into the driver interface's types, kept apart from the session
class that calls whatsmeow (``neonize.py``).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.engines.wwebjs.driver import (
    GroupInfo,
    GroupParticipant,
    ParticipantAction,
    ParticipantOutcome,
    ParticipantResult,
)
from bisnesgpt.engines.wwebjs.driver_events import GroupChange, GroupEvent, GroupParticipantsChanged, GroupUpdated

INVITE_PREFIX = "https://chat.whatsapp.com/"
DONE: dict[ParticipantAction, ParticipantOutcome] = {"add": "added", "remove": "removed", "promote": "promoted",
                                                      "demote": "demoted"}
# whatsmeow's per-participant error codes of a participants change (0: done).
PARTICIPANT_ERRORS: dict[int, ParticipantOutcome] = {403: "privacy_blocked", 409: "already_in_group"}


def user_jid(number: str) -> Any:
    """The JID of a phone number (``<digits>@s.whatsapp.net``) or of a group (``<id>@g.us``)."""
    from neonize.proto.Neonize_pb2 import JID

    user, _, server = number.partition("@")
    digits = user if server == "g.us" else "".join(ch for ch in user if ch.isdigit())
    return JID(User=digits, Server="g.us" if server == "g.us" else "s.whatsapp.net", Device=0, RawAgent=0,
               Integrator=0, IsEmpty=False)


def _number(participant: Any) -> str:
    """A participant's phone number: its JID when that is a phone number, else its PhoneNumber JID."""
    jid = participant.JID
    if jid.Server == "lid" and participant.HasField("PhoneNumber") and participant.PhoneNumber.User:
        return str(participant.PhoneNumber.User)
    return str(jid.User)


def _lid(participant: Any) -> str | None:
    if participant.JID.Server == "lid":
        return f"{participant.JID.User}@lid"
    if participant.HasField("LID") and participant.LID.User:
        return f"{participant.LID.User}@lid"
    return None


def group_of(info: Any, me: str | None) -> GroupInfo:
    """whatsmeow's ``GroupInfo`` as the driver's (``me``: this phone's number, to say whether it is an admin)."""
    participants = tuple(
        GroupParticipant(_number(m), "superadmin" if m.IsSuperAdmin else "admin" if m.IsAdmin else "member", _lid(m))
        for m in info.Participants)
    is_admin = any(m.number == me and m.role != "member" for m in participants)
    topic = info.GroupTopic.Topic if info.HasField("GroupTopic") else ""
    return GroupInfo(id=f"{info.JID.User}@g.us", subject=info.GroupName.Name, description=topic or None,
                     owner=info.OwnerPN.User or info.OwnerJID.User or None,
                     created_at=float(info.GroupCreated) or None, participants=participants,
                     announce=bool(info.GroupAnnounce.IsAnnounce), locked=bool(info.GroupLocked.isLocked),
                     is_admin=is_admin)


def participant_results(action: ParticipantAction, numbers: list[str], changed: Any) -> list[ParticipantResult]:
    """One result per asked number from whatsmeow's answer (a participant it does not mention failed)."""
    by_number = {_number(m): int(m.Error) for m in changed}
    results = []
    for number in ("".join(ch for ch in n if ch.isdigit()) for n in numbers):
        error = by_number.get(number)
        if error is None:
            outcome: ParticipantOutcome = "not_on_whatsapp" if action == "add" else "not_in_group"
        elif error == 0:
            outcome = DONE[action]
        else:
            outcome = PARTICIPANT_ERRORS.get(error, "not_on_whatsapp" if error == 404 and action == "add" else "failed")
        results.append(ParticipantResult(number, outcome))
    return results


def group_events_of(event: Any) -> list[GroupEvent]:
    """whatsmeow's ``GroupInfoEvent`` as the driver's events (one per kind of change it carries)."""
    group_id = f"{event.JID.User}@g.us"
    by = event.Sender.User or None
    stamp = float(event.Timestamp or time.time())
    seed = f"{group_id}:{event.Timestamp}:{event.ParticipantVersionID}"

    def ident(kind: str) -> str:
        return "GN" + hashlib.sha256(f"{seed}:{kind}".encode()).hexdigest()[:20].upper()

    found: list[GroupEvent] = []
    changes: tuple[tuple[GroupChange, Any], ...] = (("joined", event.Join), ("left", event.Leave),
                                                    ("promoted", event.Promote), ("demoted", event.Demote))
    for change, jids in changes:
        if len(jids):
            found.append(GroupParticipantsChanged(ident(change), group_id, change, tuple(j.User for j in jids), by,
                                                  stamp))
    updated: JsonObject = {}
    if event.HasField("Name"):
        updated["subject"] = event.Name.Name
    if event.HasField("Topic"):
        updated["description"] = event.Topic.Topic
    if event.HasField("Announce"):
        updated["announce"] = bool(event.Announce.IsAnnounce)
    if event.HasField("Locked"):
        updated["locked"] = bool(event.Locked.isLocked)
    if updated:
        found.append(GroupUpdated(ident("updated"), group_id, updated, by, stamp))
    return found
