"""The sandbox driver's group operations: each one ``group`` frame, answered by ``group_result``."""

from __future__ import annotations

from abc import ABC, abstractmethod

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.engines.wwebjs.driver import GroupChanges, GroupInfo, MediaSource, ParticipantAction, ParticipantResult
from bisnesgpt.engines.wwebjs.drivers import sandbox_wire as wire


class SandboxGroupCalls(ABC):
    """Groups, participants, invites and pictures of a sandbox session (its frames and uploads)."""

    @abstractmethod
    async def _group(self, frame: wire.GroupFrame) -> JsonObject:
        """One group operation, answered by the network's ``group_result``."""

    @abstractmethod
    async def _upload(self, source: MediaSource) -> wire.UploadedMedia:
        """Media uploaded to the network, referenced by handle."""

    @abstractmethod
    def _media_url(self, handle: str) -> str:
        """Where the network serves an uploaded handle."""

    async def groups(self) -> list[GroupInfo]:
        """The groups this phone is in."""
        found = (await self._group({"op": "list"})).get("groups")
        return [wire.group_info(g) for g in (found if isinstance(found, list) else []) if isinstance(g, dict)]

    async def group_info(self, group_id: str) -> GroupInfo:
        """One group, with its invite link when this phone is an admin."""
        return wire.group_info(wire.member(await self._group({"op": "info", "group": group_id}), "group"))

    async def create_group(self, subject: str, participants: list[str]) -> tuple[GroupInfo, list[ParticipantResult]]:
        """A new group owned by this phone, and what became of each participant."""
        result = await self._group({"op": "create", "subject": subject, "participants": participants})
        return wire.group_info(wire.member(result, "group")), wire.participant_results(result)

    async def update_participants(self, group_id: str, action: ParticipantAction,
                                  numbers: list[str]) -> list[ParticipantResult]:
        """Add, remove, promote or demote; one result per number."""
        return wire.participant_results(await self._group({"op": "participants", "group": group_id,
                                                           "action": action, "participants": numbers}))

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupInfo:
        """Change subject, description or settings; the group afterwards."""
        values: JsonObject = {"subject": changes.subject, "description": changes.description,
                              "announce": changes.announce, "locked": changes.locked}
        result = await self._group({"op": "update", "group": group_id,
                                    "changes": {k: v for k, v in values.items() if v is not None}})
        return wire.group_info(wire.member(result, "group"))

    async def invite_link(self, group_id: str, *, revoke: bool = False) -> str:
        """The invite link (a new one with ``revoke``)."""
        return str((await self._group({"op": "invite", "group": group_id, "revoke": revoke})).get("inviteLink"))

    async def join_group(self, invite: str) -> str:
        """Join by invite link; the group's id."""
        return str((await self._group({"op": "join", "invite": invite})).get("group"))

    async def leave_group(self, group_id: str) -> None:
        """Leave the group."""
        await self._group({"op": "leave", "group": group_id})

    async def group_picture(self, group_id: str) -> str | None:
        """The group picture's URL on the network's media server (None: no picture)."""
        handle = (await self._group({"op": "picture", "group": group_id, "action": "get"})).get("picture")
        return self._media_url(handle) if isinstance(handle, str) and handle else None

    async def set_group_picture(self, group_id: str, image: MediaSource) -> str:
        """Upload the image, then make it the group's picture; its picture id."""
        uploaded = await self._upload(image)
        result = await self._group({"op": "picture", "group": group_id, "action": "set", "media": uploaded})
        return str(result.get("pictureId"))

    async def remove_group_picture(self, group_id: str) -> None:
        """Remove the group's picture."""
        await self._group({"op": "picture", "group": group_id, "action": "remove"})
