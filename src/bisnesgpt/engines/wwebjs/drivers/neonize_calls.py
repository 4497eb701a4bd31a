"""Groups on neonize (and the other calls that answer: number checks, chat presence), through whatsmeow.

whatsmeow's group calls: GetJoinedGroups, GetGroupInfo, CreateGroup, UpdateGroupParticipants,
SetGroupName, SetGroupTopic, SetGroupAnnounce, SetGroupLocked, GetGroupInviteLink,
JoinGroupWithLink, LeaveGroup, SetGroupPhoto, GetProfilePictureInfo (neonize's get_joined_groups,
get_group_info, ..., set_group_photo, get_profile_picture).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from bisnesgpt.engines.wwebjs.driver import (
    GroupChanges,
    GroupInfo,
    MediaSource,
    ParticipantAction,
    ParticipantResult,
    TypingState,
)
from bisnesgpt.engines.wwebjs.driver_errors import DriverError, GroupRefused
from bisnesgpt.engines.wwebjs.drivers.base import SessionBase
from bisnesgpt.engines.wwebjs.drivers.neonize_device import DeviceJid, readable_error
from bisnesgpt.engines.wwebjs.drivers.neonize_groups import INVITE_PREFIX, group_of, participant_results, user_jid

if TYPE_CHECKING:
    from bisnesgpt.engines.wwebjs.drivers.neonize import NeonizeDriver


def _refused(what: str, exc: Exception) -> DriverError:
    """A neonize group error as the driver's: WhatsApp's answers name the cause in words."""
    text = readable_error(exc).lower()
    code = ("NOT_GROUP_ADMIN" if "forbidden" in text or "not-authorized" in text or "403" in text
            else "GROUP_NOT_FOUND" if "item-not-found" in text or "404" in text
            else "INVITE_INVALID" if what == "join" else None)
    if code is None:
        return DriverError(f"group {what} failed: {readable_error(exc)}")
    return GroupRefused(f"group {what} failed: {readable_error(exc)}", code=code)


class NeonizeCalls(SessionBase):
    """The group calls, number checks and presence of a neonize session (mixed into ``NeonizeSession``)."""

    client: Any
    jid: DeviceJid | None
    driver: NeonizeDriver

    async def check_numbers(self, numbers: list[str]) -> dict[str, bool]:
        """``is_on_whatsapp`` (whatsmeow's IsOnWhatsApp usync query), answered per number."""
        self.require_ready()
        answers = await self._call("check", self.client.is_on_whatsapp(*[f"+{n}" for n in numbers]))
        found = {"".join(ch for ch in str(a.Query) if ch.isdigit()): bool(a.IsIn) for a in answers}
        return {n: found.get(n, False) for n in numbers}

    async def typing(self, chat_id: str, state: TypingState) -> None:
        """``send_chat_presence`` with ``CHAT_PRESENCE_COMPOSING`` / ``CHAT_PRESENCE_PAUSED`` (text)."""
        self.require_ready()
        from neonize.utils.enum import ChatPresence, ChatPresenceMedia

        presence = ChatPresence.CHAT_PRESENCE_COMPOSING if state == "composing" else ChatPresence.CHAT_PRESENCE_PAUSED
        await self._call("presence", self.client.send_chat_presence(user_jid(chat_id), presence,
                                                                     ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT))

    @property
    def _me(self) -> str | None:
        return self.jid.user if self.jid else None

    async def _call(self, what: str, call: Any) -> Any:
        self.require_ready()
        try:
            return await call
        except DriverError:
            raise
        except Exception as exc:  # neonize raises its own error per call (GetGroupInfoError, ...)
            raise _refused(what, exc) from exc

    async def groups(self) -> list[GroupInfo]:
        """The groups this phone is in (``get_joined_groups``)."""
        self.require_ready()
        found = await self._call("list", self.client.get_joined_groups())
        return [group_of(g, self._me) for g in found]

    async def group_info(self, group_id: str) -> GroupInfo:
        """One group (``get_group_info``), with ``get_group_invite_link`` when this phone is an admin."""
        self.require_ready()
        group = group_of(await self._call("info", self.client.get_group_info(user_jid(group_id))), self._me)
        if group.is_admin:
            link = await self._call("invite", self.client.get_group_invite_link(user_jid(group_id), False))
            group = dataclasses.replace(group, invite_link=str(link))
        return group

    async def create_group(self, subject: str, participants: list[str]) -> tuple[GroupInfo, list[ParticipantResult]]:
        """A new group (``create_group``); what became of each participant is read from its participants."""
        self.require_ready()
        info = await self._call("create", self.client.create_group(subject, [user_jid(n) for n in participants]))
        return group_of(info, self._me), participant_results("add", participants, info.Participants)

    async def update_participants(self, group_id: str, action: ParticipantAction,
                                  numbers: list[str]) -> list[ParticipantResult]:
        """``update_group_participants`` with neonize's ``ParticipantChange`` for ``action``."""
        self.require_ready()
        from neonize.utils.enum import ParticipantChange

        changed = await self._call(action, self.client.update_group_participants(
            user_jid(group_id), [user_jid(n) for n in numbers], ParticipantChange(action)))
        return participant_results(action, numbers, changed)

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupInfo:
        """``set_group_name``, ``set_group_topic``, ``set_group_announce``, ``set_group_locked``; then the group."""
        self.require_ready()
        jid = user_jid(group_id)
        if changes.subject is not None:
            await self._call("update", self.client.set_group_name(jid, changes.subject))
        if changes.description is not None:
            # whatsmeow wants the current topic's id and a new one (empty previous id: none known).
            current = await self._call("info", self.client.get_group_info(jid))
            new_id = await self.client.generate_message_id()
            await self._call("update", self.client.set_group_topic(jid, current.GroupTopic.TopicID, new_id,
                                                                  changes.description))
        if changes.announce is not None:
            await self._call("update", self.client.set_group_announce(jid, changes.announce))
        if changes.locked is not None:
            await self._call("update", self.client.set_group_locked(jid, changes.locked))
        return await self.group_info(group_id)

    async def invite_link(self, group_id: str, *, revoke: bool = False) -> str:
        """``get_group_invite_link`` (``revoke``: a new link, the old one void)."""
        self.require_ready()
        return str(await self._call("invite", self.client.get_group_invite_link(user_jid(group_id), revoke)))

    async def join_group(self, invite: str) -> str:
        """``join_group_with_link`` with the link's code; the group's id."""
        self.require_ready()
        code = invite.strip().removeprefix(INVITE_PREFIX).strip("/")
        jid = await self._call("join", self.client.join_group_with_link(code))
        return f"{jid.User}@g.us"

    async def leave_group(self, group_id: str) -> None:
        """``leave_group``."""
        self.require_ready()
        await self._call("leave", self.client.leave_group(user_jid(group_id)))

    async def group_picture(self, group_id: str) -> str | None:
        """``get_profile_picture`` of the group (the full picture, not the preview): its URL, None when unset."""
        self.require_ready()
        from neonize.proto.Neonize_pb2 import GetProfilePictureParams

        try:
            picture = await self.client.get_profile_picture(user_jid(group_id), GetProfilePictureParams(Preview=False))
        except Exception as exc:  # whatsmeow: ErrProfilePictureNotSet (item-not-found) when there is none
            text = readable_error(exc).lower()
            if "not set" in text or "item-not-found" in text or "404" in text:
                return None
            raise _refused("picture", exc) from exc
        return str(picture.URL) or None

    async def set_group_picture(self, group_id: str, image: MediaSource) -> str:
        """``set_group_photo`` with the image's bytes (downloaded here, size-limited); the new picture id."""
        self.require_ready()
        media = await self.driver.media.fetch(image)
        return str(await self._call("picture", self.client.set_group_photo(user_jid(group_id), media.data)))

    async def remove_group_picture(self, group_id: str) -> None:
        """Refused: neonize's ``set_group_photo`` always sends a picture (whatsmeow removes one only for nil)."""
        self.require_ready()
        raise GroupRefused("the neonize driver cannot remove a group picture (neonize offers no removal); remove "
                           "it on the phone, or set another picture", code="PICTURE_REMOVAL_UNSUPPORTED")
