"""Groups on a WhatsApp-Web phone end to end: api → session command → wwebjs (sandbox driver) →
sandbox network, and the network's group notifications back as tenant events.

The sandbox network models membership, roles, invite links and announcement-only groups;
other phones act through its admin API and CLI (``sandbox wweb group``), as people would on
their phones. Group messages go out through ``POST /api/v1/messages`` and come in from a
participant with the group, the author's number and LID, and mentions.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.sandbox.wweb.protocol import lid_of
from tests.support.polling import eventually
from tests.support.procs import clean_env
from tests.support.wwebjs import (
    Db,
    RoleProc,
    SandboxNetwork,
    company_key,
    paired_stack,
    seed_phone,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ME = "60123450001"  # the phone acme's session is linked to
FRIEND, OTHER = "60190000002", "60190000003"


class GroupStack:
    def __init__(self, sandbox: SandboxNetwork, procs: list[RoleProc], api: RoleProc, db: Db, key: str,
                 rival_key: str, tmp: Path) -> None:
        self.sandbox, self.procs, self.api, self.db, self.tmp = sandbox, procs, api, db, tmp
        self.http = httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        self.rival = httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {rival_key}"},
                                       timeout=60)

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> dict[str, Any]:
        response = await self.http.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        result: dict[str, Any] = response.json()
        return result

    async def group_events(self, kind: str, group_id: str, n: int) -> list[dict[str, Any]]:
        async def check() -> list[dict[str, Any]] | None:
            rows = await self.db.fetch("SELECT data FROM tenant_events WHERE company_id = 'acme' AND type = $1 "
                                       "AND data->>'group_id' = $2 ORDER BY created_at, id", kind, group_id)
            return [r["data"] for r in rows] if len(rows) >= n else None
        return await eventually(check, timeout=30, what=f"{n} {kind} events of {group_id}")

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bisnesgpt", "sandbox", "wweb", *args, "--url", self.sandbox.url],
                              cwd=self.tmp, env=clean_env(COLUMNS="400"), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, module_db: tuple[str, Database],
                module_redis: str) -> AsyncIterator[GroupStack]:
    url = module_db[0]
    tmp = tmp_path_factory.mktemp("groups")
    await seed_phone(url, "acme", 0)
    await seed_phone(url, "acme", 1, connection_type="meta_direct")
    await seed_phone(url, "rival", 0)
    async with paired_stack(tmp, url, module_redis, phone=ME) as running:
        stack = GroupStack(running.sandbox, running.procs, running.api, running.db, await company_key(url, "acme"),
                           await company_key(url, "rival"), tmp)
        yield stack
        await stack.http.aclose()
        await stack.rival.aclose()


async def test_create_manage_invite_join_and_leave_groups(stack: GroupStack) -> None:
    # Someone adds this phone to their group from their phone: it is listed, this phone not an admin.
    theirs = await stack.sandbox.call("POST", "/admin/groups", json={"by": FRIEND, "subject": "Friends",
                                                                     "participants": [ME, OTHER]})
    listed = await stack.ok("GET", "/api/v1/groups", params={"phoneIndex": 0})
    summary = next(g for g in listed["groups"] if g["id"] == theirs["id"])
    assert summary == {"id": theirs["id"], "subject": "Friends", "participantsCount": 3, "isAdmin": False}
    joined = await stack.group_events("group.participants", theirs["id"], 1)
    assert joined[0]["change"] == "joined" and ME in joined[0]["participants"] and joined[0]["by"] == FRIEND
    info = (await stack.ok("GET", f"/api/v1/groups/{theirs['id']}"))["group"]
    assert info["inviteLink"] is None  # only admins see it
    assert {p["number"]: p["role"] for p in info["participants"]} == {FRIEND: "superadmin", ME: "member",
                                                                      OTHER: "member"}
    refused = await stack.http.get(f"/api/v1/groups/{theirs['id']}/invite")
    assert refused.status_code == 403 and refused.json()["code"] == "NOT_GROUP_ADMIN", refused.text

    # This phone creates a group: a result per participant.
    created = await stack.ok("POST", "/api/v1/groups", 201, json={
        "subject": "Order updates", "participants": [OTHER, "+60123456404", "60123456403", FRIEND]})
    group = created["group"]
    gid = group["id"]
    assert {r["number"]: r["outcome"] for r in created["participants"]} == {
        OTHER: "added", "60123456404": "not_on_whatsapp", "60123456403": "privacy_blocked", FRIEND: "added"}
    assert group["isAdmin"] is True and group["owner"] == ME and group["inviteLink"].startswith("https://chat.")
    assert {p["number"]: p["role"] for p in group["participants"]} == {ME: "superadmin", OTHER: "member",
                                                                       FRIEND: "member"}
    assert all(p["lid"] == lid_of(p["number"]) for p in group["participants"])

    async def change(action: str, *numbers: str) -> dict[str, str]:
        result = await stack.ok("POST", f"/api/v1/groups/{gid}/participants",
                                json={"action": action, "participants": list(numbers)})
        return {r["number"]: r["outcome"] for r in result["participants"]}

    assert await change("promote", OTHER) == {OTHER: "promoted"}
    assert await change("demote", OTHER, "60111111111") == {OTHER: "demoted", "60111111111": "not_in_group"}
    assert await change("remove", FRIEND) == {FRIEND: "removed"}
    assert await change("add", FRIEND, OTHER) == {FRIEND: "added", OTHER: "already_in_group"}
    events = await stack.group_events("group.participants", gid, 5)
    assert [(e["change"], e["participants"], e["by"]) for e in events] == [
        ("joined", [OTHER, FRIEND], ME), ("promoted", [OTHER], ME), ("demoted", [OTHER], ME),
        ("left", [FRIEND], ME), ("joined", [FRIEND], ME)]

    # Subject, description and settings; each change is a group.updated event.
    updated = (await stack.ok("PATCH", f"/api/v1/groups/{gid}", json={
        "subject": "Orders", "description": "Delivery times", "settings": {"announce": True, "locked": True}}))["group"]
    assert (updated["subject"], updated["description"], updated["settings"]) == (
        "Orders", "Delivery times", {"announce": True, "locked": True})
    [event] = await stack.group_events("group.updated", gid, 1)
    assert event["changes"] == {"subject": "Orders", "description": "Delivery times", "announce": True,
                                "locked": True} and event["by"] == ME

    # Invite links: get, revoke (the old one no longer joins), join by the new one, leave.
    link = (await stack.ok("GET", f"/api/v1/groups/{gid}/invite"))["inviteLink"]
    assert link == group["inviteLink"]
    new_link = (await stack.ok("POST", f"/api/v1/groups/{gid}/invite/revoke"))["inviteLink"]
    assert new_link != link
    stack.cli("group", "leave", theirs["id"], "--by", ME)  # this phone leaves the friends' group on the phone
    await stack.group_events("group.participants", theirs["id"], 2)
    all_groups = (await stack.sandbox.call("GET", "/admin/groups"))["groups"]
    their_link = next(g["inviteLink"] for g in all_groups if g["id"] == theirs["id"])
    bad = await stack.http.post("/api/v1/groups/join", json={"invite": link})
    assert bad.status_code == 422 and bad.json()["code"] == "INVITE_INVALID", bad.text
    assert (await stack.ok("POST", "/api/v1/groups/join", json={"invite": their_link}))["groupId"] == theirs["id"]
    assert (await stack.ok("POST", f"/api/v1/groups/{theirs['id']}/leave")) == {"groupId": theirs["id"], "left": True}
    events = await stack.group_events("group.participants", theirs["id"], 4)
    assert [(e["change"], e["participants"]) for e in events[-2:]] == [("joined", [ME]), ("left", [ME])]
    gone = await stack.http.get(f"/api/v1/groups/{theirs['id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "NOT_IN_GROUP", gone.text

    # The sandbox's record shows the groups and the notifications.
    table = stack.cli("groups")
    assert gid in table and "announce=True" in table and f"{ME}(s)" in table
    record = stack.cli("messages", "--session", "acme:0")
    assert "group_participants" in record and f"left {ME} by={ME}" in record


async def test_group_messages_out_and_in_with_mentions(stack: GroupStack) -> None:
    created = await stack.ok("POST", "/api/v1/groups", 201, json={"subject": "Team", "participants": [FRIEND]})
    gid = created["group"]["id"]
    sent = await stack.ok("POST", "/api/v1/messages", 202, json={
        "to": gid, "type": "text", "text": {"body": f"Hi @{FRIEND}", "mentions": [f"+{FRIEND}"]}})

    async def delivered() -> list[dict[str, Any]] | None:
        found = [m for m in await stack.sandbox.messages("acme:0") if m["chat"] == gid and m["direction"] == "out"]
        return found or None
    [out] = await eventually(delivered, timeout=30, what="the group message on the network")
    assert out["body"]["mentions"] == [FRIEND] and out["body"]["text"] == f"Hi @{FRIEND}"
    row = await stack.db.message(sent["messageId"])
    assert row is not None and row["chat_id"] == gid

    # A participant writes in the group: the event names the group and its author by number and LID.
    injected = await stack.sandbox.inbound("acme", 0, **{"from": FRIEND, "chat": gid, "text": f"@{ME} ok",
                                                         "mentions": [ME]})

    async def inbound() -> dict[str, Any] | None:
        return await stack.db.fetchrow("SELECT data FROM tenant_events WHERE company_id = 'acme' AND type = "
                                       "'message.inbound' AND data->>'external_id' = $1", injected["id"])
    data = (await eventually(inbound, timeout=30, what="group message stored"))["data"]
    assert (data["chat_id"], data["group_id"], data["participant"], data["participant_lid"], data["mentions"]) == (
        gid, gid, FRIEND, lid_of(FRIEND), [ME])
    assert data["payload"]["group"] == {"id": gid, "participant": FRIEND, "participant_lid": lid_of(FRIEND)}

    # Announcement-only, and this phone is no admin there: the send fails for good, with the reason.
    theirs = await stack.sandbox.call("POST", "/admin/groups", json={"by": FRIEND, "subject": "News",
                                                                     "participants": [ME]})
    stack.cli("group", "update", theirs["id"], "--by", FRIEND, "--announce")
    [event] = await stack.group_events("group.updated", theirs["id"], 1)
    assert event["changes"] == {"announce": True} and event["by"] == FRIEND
    refused = await stack.ok("POST", "/api/v1/messages", 202, json={"to": theirs["id"], "type": "text",
                                                                    "text": {"body": "may I?"}})
    failed = await stack.db.wait_message(refused["messageId"], "failed", timeout=30)
    assert failed["error_code"] == "NOT_GROUP_ADMIN"


async def test_groups_are_refused_on_cloud_api_phones_and_for_other_tenants(stack: GroupStack) -> None:
    meta = await stack.http.get("/api/v1/groups", params={"phoneIndex": 1})
    assert meta.status_code == 422 and meta.json()["code"] == "UNSUPPORTED", meta.text
    mention = await stack.http.post("/api/v1/messages", json={"to": "60123456789", "phoneIndex": 1, "type": "text",
                                                              "text": {"body": "hi @60123", "mentions": ["60123"]}})
    assert mention.status_code == 422 and mention.json()["code"] == "UNSUPPORTED_MESSAGE_TYPE", mention.text
    created = await stack.ok("POST", "/api/v1/groups", 201, json={"subject": "Private", "participants": [FRIEND]})
    # Another tenant cannot name acme, and its own (unpaired) phone is not acme's session.
    other = await stack.rival.get(f"/api/v1/groups/{created['group']['id']}", params={"companyId": "acme"})
    assert other.status_code == 404, other.text
    bad = await stack.http.post("/api/v1/groups", json={"subject": "x", "participants": ["not a number"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "participants.0", bad.text
    assert (await stack.http.get("/api/v1/groups/abc")).status_code == 422


async def test_set_read_and_remove_a_group_picture(stack: GroupStack) -> None:
    created = await stack.ok("POST", "/api/v1/groups", 201, json={"subject": "Pictured", "participants": [FRIEND]})
    group_id = created["group"]["id"]
    path = f"/api/v1/groups/{group_id}/picture"
    assert await stack.ok("GET", path) == {"groupId": group_id, "pictureUrl": None}

    image = f"{stack.sandbox.url}/samples/image.png"
    picture = await stack.ok("PUT", path, json={"link": image})
    assert picture["groupId"] == group_id and picture["pictureId"] and picture["pictureUrl"]
    async with httpx.AsyncClient(timeout=30) as plain:
        served, sample = (await plain.get(picture["pictureUrl"])), (await plain.get(image))
    assert served.status_code == 200 and served.content == sample.content  # the network keeps what was uploaded
    assert await stack.ok("GET", path) == {"groupId": group_id, "pictureUrl": picture["pictureUrl"]}
    view = (await stack.sandbox.call("GET", "/admin/groups"))["groups"]
    assert next(g for g in view if g["id"] == group_id)["picture"] == picture["pictureUrl"].rsplit("/", 1)[1]

    # Not an image: refused by the network, a 422 for the caller; a bad link never leaves the API.
    not_image = await stack.http.put(path, json={"link": f"{stack.sandbox.url}/samples/document.pdf"})
    assert not_image.status_code == 422 and "image" in not_image.json()["detail"], not_image.text
    assert (await stack.http.put(path, json={"link": "not a url"})).status_code == 422

    # A locked group of someone else's: only its admins change the picture.
    theirs = await stack.sandbox.call("POST", "/admin/groups", json={"by": FRIEND, "subject": "Locked",
                                                                     "participants": [ME]})
    await stack.sandbox.call("POST", f"/admin/groups/{theirs['id']}/actions", json={
        "by": FRIEND, "action": "update", "changes": {"locked": True}})
    refused = await stack.http.put(f"/api/v1/groups/{theirs['id']}/picture", json={"link": image})
    assert refused.status_code == 403 and refused.json()["code"] == "NOT_GROUP_ADMIN", refused.text

    assert await stack.ok("DELETE", path) == {"groupId": group_id, "pictureUrl": None}
    assert await stack.ok("GET", path) == {"groupId": group_id, "pictureUrl": None}
    assert next(g for g in (await stack.sandbox.call("GET", "/admin/groups"))["groups"]
                if g["id"] == group_id)["picture"] is None
