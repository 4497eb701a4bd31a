"""Groups of a WhatsApp-Web phone: ``/api/v1/groups`` (list, info, create, participants, settings,
invite links, join, leave, picture).

Every operation is carried out by the session that owns the phone: the API queues a
``group`` session command (``session_commands``), the wwebjs process driving the session
runs it on its driver (``engines.wwebjs.groups``) and writes the answer, which is returned
here as it came. Scoped to the caller's company and one phone (``phoneIndex``); a Cloud
API phone answers ``422 UNSUPPORTED`` (``capabilities.check_groups``). Messages to a group
go through ``POST /api/v1/messages`` with the group id as ``to``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from bisnesgpt.api.auth import CurrentPrincipal
from bisnesgpt.api.schemas.common import (
    COMPANY_ID_PATTERN,
    MAX_PHONE_INDEX,
    URL_PATTERN,
    JsonObject,
    problem_responses,
)
from bisnesgpt.api.session_commands import Refusals, normalise_phone, owner_answer
from bisnesgpt.core.errors import Forbidden, NotFound, ValidationFailed
from bisnesgpt.core.jsontypes import JsonValue
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.commands import GROUP_OP_TIMEOUT_S
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.groups import GroupOp
from bisnesgpt.messaging.capabilities import check_groups
from bisnesgpt.messaging.queues import CONNECTION_TYPE_QUEUES
from bisnesgpt.phones.store import get_phone
from bisnesgpt.processes.context import ProcessContext

# The API waits a little longer than the owner waits for WhatsApp, so the owner's answer arrives.
WAIT_S = GROUP_OP_TIMEOUT_S + 5
GROUP_ID = re.compile(r"^(\d[\d-]{4,39})(@g\.us)?$")

PhoneQuery = Annotated[int, Query(ge=0, le=MAX_PHONE_INDEX, description="The phone (its index)", examples=[0])]
CompanyQuery = Annotated[str | None, Query(pattern=COMPANY_ID_PATTERN,
                                           description="The company (required with an operator key)",
                                           examples=["acme"])]
GroupPath = Annotated[str, Path(min_length=5, max_length=48, description="The group id (with or without @g.us)",
                                examples=["120363025246125888@g.us"])]
Numbers = Annotated[list[Annotated[str, Field(min_length=5, max_length=32)]],
                    Field(min_length=1, max_length=256, description="Phone numbers, international format",
                          examples=[["60123456789", "+60198765432"]])]

# A driver's refusal code → the problem it is answered with.
REFUSALS: Refusals = {
    "GROUP_NOT_FOUND": NotFound, "NOT_IN_GROUP": NotFound, "NOT_GROUP_ADMIN": Forbidden,
    "INVITE_INVALID": ValidationFailed, "BAD_GROUP_REQUEST": ValidationFailed,
    "PICTURE_REMOVAL_UNSUPPORTED": ValidationFailed,
    # A picture's link the wwebjs process could not use: the caller's to fix.
    "MEDIA_URL_REFUSED": ValidationFailed, "MEDIA_DOWNLOAD_FAILED": ValidationFailed,
    "MEDIA_TOO_LARGE": ValidationFailed, "INVALID_PAYLOAD": ValidationFailed,
}

GROUP_EXAMPLE: JsonObject = {
    "id": "120363025246125888@g.us", "subject": "Order updates", "participantsCount": 3, "isAdmin": True,
    "description": "Where we post delivery times", "owner": "60123450001", "createdAt": 1767261600.0,
    "settings": {"announce": False, "locked": True},
    "participants": [{"number": "60123450001", "lid": "104812300551234@lid", "role": "superadmin"},
                     {"number": "60123456789", "lid": "204812300559876@lid", "role": "admin"},
                     {"number": "60198765432", "lid": None, "role": "member"}],
    "inviteLink": "https://chat.whatsapp.com/F4k3Inv1teC0de"}
RESULTS_EXAMPLE: list[JsonObject] = [{"number": "60123456789", "outcome": "added"},
                                     {"number": "60123456404", "outcome": "not_on_whatsapp"},
                                     {"number": "60123456403", "outcome": "privacy_blocked"}]


class CreateGroup(BaseModel):
    """Body of a group creation: its subject and the first participants (this phone becomes the owner)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"subject": "Order updates", "participants": ["60123456789", "60198765432"]}]})
    subject: str = Field(min_length=1, max_length=100)
    participants: Numbers


class ParticipantsChange(BaseModel):
    """Body of a participants change: add, remove, promote (to admin) or demote (to member)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"action": "add", "participants": ["60123456789"]}, {"action": "promote", "participants": ["60123456789"]}]})
    action: Literal["add", "remove", "promote", "demote"]
    participants: Numbers


class GroupSettings(BaseModel):
    """Who may send and who may change the group's info."""

    model_config = ConfigDict(extra="forbid")
    announce: bool | None = Field(None, description="Only admins send messages")
    locked: bool | None = Field(None, description="Only admins change subject, description and picture")


class GroupUpdate(BaseModel):
    """Body of a group change (what is left out stays as it is)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"subject": "Order updates (2026)"}, {"description": "Where we post delivery times"},
        {"settings": {"announce": True, "locked": True}}]})
    subject: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2048)
    settings: GroupSettings | None = None


class JoinGroup(BaseModel):
    """Body of a join: an invite link (or just its code)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"invite": "https://chat.whatsapp.com/F4k3Inv1teC0de"}]})
    invite: str = Field(min_length=4, max_length=200)


class GroupPicture(BaseModel):
    """Body of setting a group's picture: a JPEG by URL (fetched by the wwebjs process, size-limited)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"link": "https://cdn.acme.example/logo.jpg"}]})
    link: str = Field(min_length=8, max_length=2048, pattern=URL_PATTERN)


def group_id_of(raw: str) -> str:
    """``<id>@g.us`` for a group id given with or without the suffix; 422 for anything else."""
    match = GROUP_ID.match(raw.strip())
    if match is None:
        raise ValidationFailed(f"{raw!r} is not a group id", errors=[{
            "field": "groupId", "message": "a group id looks like 120363025246125888@g.us", "type": "value_error"}])
    return f"{match.group(1)}@g.us"


def numbers_of(raw: list[str]) -> list[JsonValue]:
    """The numbers as digits (country code first); 422 naming each one that is not a phone number."""
    found: list[str] = []
    errors: list[JsonObject] = []
    for i, text in enumerate(raw):
        try:
            found.append(normalise_phone(text))
        except ValidationFailed:
            errors.append({"field": f"participants.{i}", "message": f"{text!r} is not a phone number "
                                                                    "(international format, e.g. 60123456789)",
                           "type": "value_error"})
    if errors:
        raise ValidationFailed("participants: not every entry is a phone number", errors=errors)
    return list(dict.fromkeys(found))  # each number once, in the order given


def _ok(example: object, description: str) -> dict[int | str, dict[str, object]]:
    return {200: {"description": description, "content": {"application/json": {"example": example}}},
            **problem_responses(401, 403, 404, 409, 422, 502, 503)}


class GroupRoutes:
    """The group routes: each checks the phone, queues the operation and answers what its owner did."""

    def __init__(self, ctx: ProcessContext) -> None:
        self.ctx = ctx
        self.db: Database = ctx.db
        self.router = APIRouter(tags=["groups"])
        self._add_routes()

    async def run(self, principal: CurrentPrincipal, company_id: str | None, phone_index: int, op: GroupOp,
                  **args: JsonValue) -> JsonObject:
        """Carry out ``op`` on the phone's session; its answer (a problem when refused or unanswered)."""
        company = principal.company_required(company_id)
        async with self.db.connection() as conn:
            phone = await get_phone(conn, company, phone_index)
        if phone is None:
            raise NotFound(f"no phone {phone_index} configured for company {company!r}")
        spec = CONNECTION_TYPE_QUEUES.get(phone.connection_type)
        check_groups(spec.process_name if spec else str(phone.connection_type), phone_index)
        key = SessionKey(company, phone_index)
        body: JsonObject = {"op": op, **{k: v for k, v in args.items() if v is not None}}
        return await owner_answer(self.ctx, key, "group", body, principal=principal, what=op, wait=WAIT_S,
                                  refusals=REFUSALS)

    def _add_routes(self) -> None:
        router = self.router

        @router.get("/api/v1/groups", summary="The groups the phone is in",
                    responses=_ok({"groups": [{k: GROUP_EXAMPLE[k] for k in
                                               ("id", "subject", "participantsCount", "isAdmin")}]},
                                  "Each group: id, subject, how many participants, whether this phone is an admin"))
        async def list_groups(principal: CurrentPrincipal, phoneIndex: PhoneQuery = 0,
                              companyId: CompanyQuery = None) -> JSONResponse:
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "list"))

        @router.post("/api/v1/groups", summary="Create a group (this phone is its owner)", status_code=201,
                     responses={201: {"description": "The group, and what became of each participant",
                                      "content": {"application/json": {"example": {
                                          "group": GROUP_EXAMPLE, "participants": RESULTS_EXAMPLE}}}},
                                **problem_responses(401, 404, 409, 422, 502, 503)})
        async def create_group(principal: CurrentPrincipal, body: CreateGroup, phoneIndex: PhoneQuery = 0,
                               companyId: CompanyQuery = None) -> JSONResponse:
            result = await self.run(principal, companyId, phoneIndex, "create", subject=body.subject,
                                    participants=numbers_of(body.participants))
            return JSONResponse(result, status_code=201)

        @router.post("/api/v1/groups/join", summary="Join a group by its invite link",
                     responses=_ok({"groupId": "120363025246125888@g.us"}, "The group joined"))
        async def join_group(principal: CurrentPrincipal, body: JoinGroup, phoneIndex: PhoneQuery = 0,
                             companyId: CompanyQuery = None) -> JSONResponse:
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "join", invite=body.invite))

        @router.get("/api/v1/groups/{groupId}", summary="One group: participants with roles, settings, invite link",
                    responses=_ok({"group": GROUP_EXAMPLE}, "The group (inviteLink only when this phone is admin)"))
        async def group_info(principal: CurrentPrincipal, groupId: GroupPath, phoneIndex: PhoneQuery = 0,
                             companyId: CompanyQuery = None) -> JSONResponse:
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "info", groupId=group_id_of(groupId)))

        @router.patch("/api/v1/groups/{groupId}", summary="Change subject, description or settings",
                      responses=_ok({"group": GROUP_EXAMPLE}, "The group afterwards"))
        async def update_group(principal: CurrentPrincipal, groupId: GroupPath, body: GroupUpdate,
                               phoneIndex: PhoneQuery = 0, companyId: CompanyQuery = None) -> JSONResponse:
            settings = body.settings or GroupSettings()
            if body.subject is None and body.description is None and settings.announce is None \
                    and settings.locked is None:
                raise ValidationFailed("nothing to change: give subject, description or settings",
                                       errors=[{"field": "body", "message": "empty change", "type": "missing"}])
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "update",
                                               groupId=group_id_of(groupId), subject=body.subject,
                                               description=body.description, announce=settings.announce,
                                               locked=settings.locked))

        @router.post("/api/v1/groups/{groupId}/participants",
                     summary="Add, remove, promote or demote participants (a result for each)",
                     responses=_ok({"groupId": "120363025246125888@g.us", "action": "add",
                                    "participants": RESULTS_EXAMPLE},
                                   "Per participant: added, removed, promoted, demoted, not_on_whatsapp, "
                                   "privacy_blocked, already_in_group, not_in_group or failed"))
        async def participants(principal: CurrentPrincipal, groupId: GroupPath, body: ParticipantsChange,
                               phoneIndex: PhoneQuery = 0, companyId: CompanyQuery = None) -> JSONResponse:
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "participants",
                                               groupId=group_id_of(groupId), action=body.action,
                                               participants=numbers_of(body.participants)))

        @router.get("/api/v1/groups/{groupId}/invite", summary="The group's invite link (admins only)",
                    responses=_ok({"groupId": "120363025246125888@g.us",
                                   "inviteLink": "https://chat.whatsapp.com/F4k3Inv1teC0de"}, "The invite link"))
        async def invite(principal: CurrentPrincipal, groupId: GroupPath, phoneIndex: PhoneQuery = 0,
                         companyId: CompanyQuery = None) -> JSONResponse:
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "invite",
                                               groupId=group_id_of(groupId)))

        @router.post("/api/v1/groups/{groupId}/invite/revoke",
                     summary="Revoke the invite link (the old one stops working) and get a new one",
                     responses=_ok({"groupId": "120363025246125888@g.us",
                                    "inviteLink": "https://chat.whatsapp.com/N3wInv1teC0de"}, "The new invite link"))
        async def revoke_invite(principal: CurrentPrincipal, groupId: GroupPath, phoneIndex: PhoneQuery = 0,
                                companyId: CompanyQuery = None) -> JSONResponse:
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "invite",
                                               groupId=group_id_of(groupId), revoke=True))

        @router.post("/api/v1/groups/{groupId}/leave", summary="Leave the group",
                     responses=_ok({"groupId": "120363025246125888@g.us", "left": True}, "Left"))
        async def leave(principal: CurrentPrincipal, groupId: GroupPath, phoneIndex: PhoneQuery = 0,
                        companyId: CompanyQuery = None) -> JSONResponse:
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "leave",
                                               groupId=group_id_of(groupId)))

        @router.get("/api/v1/groups/{groupId}/picture", summary="Where the group's picture can be fetched now",
                    responses=_ok({"groupId": "120363025246125888@g.us",
                                   "pictureUrl": "https://pps.whatsapp.net/v/t61.24694-24/…"},
                                  "The picture's URL (null: the group has none)"))
        async def picture(principal: CurrentPrincipal, groupId: GroupPath, phoneIndex: PhoneQuery = 0,
                          companyId: CompanyQuery = None) -> JSONResponse:
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "picture",
                                               groupId=group_id_of(groupId), action="get"))

        @router.put("/api/v1/groups/{groupId}/picture",
                    summary="Set the group's picture (a JPEG by URL; admins only when the group is locked)",
                    responses=_ok({"groupId": "120363025246125888@g.us", "pictureId": "1767261600123",
                                   "pictureUrl": "https://pps.whatsapp.net/v/t61.24694-24/…"},
                                  "The new picture's id and URL"))
        async def set_picture(principal: CurrentPrincipal, groupId: GroupPath, body: GroupPicture,
                              phoneIndex: PhoneQuery = 0, companyId: CompanyQuery = None) -> JSONResponse:
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "picture",
                                               groupId=group_id_of(groupId), action="set", link=body.link))

        @router.delete("/api/v1/groups/{groupId}/picture", summary="Remove the group's picture",
                       responses=_ok({"groupId": "120363025246125888@g.us", "pictureUrl": None}, "Removed"))
        async def remove_picture(principal: CurrentPrincipal, groupId: GroupPath, phoneIndex: PhoneQuery = 0,
                                 companyId: CompanyQuery = None) -> JSONResponse:
            return JSONResponse(await self.run(principal, companyId, phoneIndex, "picture",
                                               groupId=group_id_of(groupId), action="remove"))
