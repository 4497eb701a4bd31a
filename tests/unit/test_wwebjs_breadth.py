"""Groups, message types and anti-ban pacing in both drivers without a network: the neonize
driver's reading and building of whatsmeow's protobufs (real neonize messages) and its calls
refused before a connection, the sandbox driver's reading of the network's frames, the
engine's group command runner, contact cards, and the pacing jitter's distribution."""

from __future__ import annotations

from typing import Any

import pytest

from bisnesgpt.engines.wwebjs.driver import (
    GroupChanges,
    GroupInfo,
    GroupParticipant,
    ParticipantAction,
    ParticipantResult,
    SessionKey,
)
from bisnesgpt.engines.wwebjs.driver_errors import GroupRefused, NotConnected, SendRejected
from bisnesgpt.engines.wwebjs.driver_events import GroupParticipantsChanged, GroupUpdated, SessionEvent
from bisnesgpt.engines.wwebjs.drivers import sandbox_wire as wire
from bisnesgpt.engines.wwebjs.drivers.neonize import NeonizeDriver
from bisnesgpt.engines.wwebjs.drivers.neonize_groups import group_events_of, group_of, participant_results, user_jid
from bisnesgpt.engines.wwebjs.groups import run_group_op
from bisnesgpt.engines.wwebjs.media import MediaFetcher

pytestmark = pytest.mark.unit


def _jid(user: str, server: str = "s.whatsapp.net") -> Any:
    from neonize.proto.Neonize_pb2 import JID

    return JID(User=user, Server=server, Device=0, RawAgent=0, Integrator=0, IsEmpty=False)


def _participant(number: str, *, lid: str | None = None, admin: bool = False, superadmin: bool = False,
                 error: int = 0) -> Any:
    from neonize.proto.Neonize_pb2 import GroupParticipant as Proto

    if lid is not None:  # a LID-addressed group names the member by LID, its number as PhoneNumber
        return Proto(JID=_jid(lid, "lid"), PhoneNumber=_jid(number), IsAdmin=admin or superadmin,
                     IsSuperAdmin=superadmin, Error=error)
    return Proto(JID=_jid(number), IsAdmin=admin or superadmin, IsSuperAdmin=superadmin, Error=error)


def test_whatsmeow_group_info_becomes_the_drivers() -> None:
    from neonize.proto.Neonize_pb2 import GroupAnnounce, GroupLocked, GroupName, GroupTopic
    from neonize.proto.Neonize_pb2 import GroupInfo as Proto

    info = Proto(JID=_jid("120363025246125888", "g.us"), OwnerPN=_jid("60123450001"),
                 GroupName=GroupName(Name="Orders"), GroupTopic=GroupTopic(Topic="Delivery times"),
                 GroupAnnounce=GroupAnnounce(IsAnnounce=True), GroupLocked=GroupLocked(isLocked=False),
                 GroupCreated=1767261568,  # a float32 in the protobuf
                 Participants=[_participant("60123450001", superadmin=True),
                               _participant("60190000002", lid="104812300551234", admin=True),
                               _participant("60190000003")])
    group = group_of(info, "60123450001")
    assert group == GroupInfo(
        id="120363025246125888@g.us", subject="Orders", description="Delivery times", owner="60123450001",
        created_at=1767261568.0, announce=True, locked=False, is_admin=True,
        participants=(GroupParticipant("60123450001", "superadmin"),
                      GroupParticipant("60190000002", "admin", "104812300551234@lid"),
                      GroupParticipant("60190000003", "member")))
    assert group_of(info, "60190000003").is_admin is False


def test_participant_results_come_from_whatsmeows_per_participant_errors() -> None:
    answer = [_participant("60190000002"), _participant("60190000003", error=403),
              _participant("60190000004", error=409), _participant("60190000005", error=500)]
    assert participant_results("add", ["+60190000002", "60190000003", "60190000004", "60190000005",
                                       "60190000006"], answer) == [
        ParticipantResult("60190000002", "added"), ParticipantResult("60190000003", "privacy_blocked"),
        ParticipantResult("60190000004", "already_in_group"), ParticipantResult("60190000005", "failed"),
        ParticipantResult("60190000006", "not_on_whatsapp")]
    assert participant_results("remove", ["60190000002", "60190000009"], answer[:1]) == [
        ParticipantResult("60190000002", "removed"), ParticipantResult("60190000009", "not_in_group")]


def test_group_info_events_become_participant_and_update_events_with_stable_ids() -> None:
    from neonize.proto.Neonize_pb2 import GroupInfoEvent, GroupLocked, GroupName

    event = GroupInfoEvent(JID=_jid("120363025246125888", "g.us"), Sender=_jid("60190000002"), Timestamp=1767261600,
                           Join=[_jid("60190000003"), _jid("60190000004")], Promote=[_jid("60190000005")],
                           Name=GroupName(Name="New name"), Locked=GroupLocked(isLocked=True))
    found = group_events_of(event)
    assert [type(e) for e in found] == [GroupParticipantsChanged, GroupParticipantsChanged, GroupUpdated]
    joined, promoted, updated = found
    assert isinstance(joined, GroupParticipantsChanged) and isinstance(promoted, GroupParticipantsChanged)
    assert (joined.group_id, joined.change, joined.participants, joined.by, joined.timestamp) == (
        "120363025246125888@g.us", "joined", ("60190000003", "60190000004"), "60190000002", 1767261600.0)
    assert (promoted.change, promoted.participants) == ("promoted", ("60190000005",))
    assert isinstance(updated, GroupUpdated) and updated.changes == {"subject": "New name", "locked": True}
    # The same notification delivered again has the same ids (one tenant event each).
    assert [e.id for e in group_events_of(event)] == [e.id for e in found]
    assert len({e.id for e in found}) == 3


def test_jids_for_numbers_and_groups() -> None:
    assert (user_jid("+60 12-345").User, user_jid("+60 12-345").Server) == ("6012345", "s.whatsapp.net")
    assert (user_jid("120363-1@g.us").User, user_jid("120363-1@g.us").Server) == ("120363-1", "g.us")


async def test_neonize_group_checks_and_presence_calls_need_a_ready_connection() -> None:
    driver = NeonizeDriver(None, "postgresql://unused", schema="wa", sslmode="disable",  # type: ignore[arg-type]
                           media=MediaFetcher(1 << 20, 5))
    events: list[SessionEvent] = []
    session = driver.session(SessionKey("neo", 0), events.append, None)
    calls = [session.groups(), session.group_info("1@g.us"), session.create_group("s", ["601"]),
             session.update_participants("1@g.us", "add", ["601"]), session.update_group("1@g.us", GroupChanges("x")),
             session.invite_link("1@g.us"), session.join_group("https://chat.whatsapp.com/abc"),
             session.leave_group("1@g.us"), session.check_numbers(["601"]), session.typing("601@c.us", "composing")]
    for call in calls:
        with pytest.raises(NotConnected):
            await call
    assert events == []


def test_the_sandbox_networks_group_frames() -> None:
    view = {"id": "1@g.us", "subject": "S", "description": None, "owner": "601", "createdAt": 5.0, "announce": True,
            "locked": False, "isAdmin": True, "size": 2, "inviteLink": "https://chat.whatsapp.com/x",
            "participants": [{"number": "601", "lid": "9@lid", "role": "superadmin"},
                             {"number": "602", "lid": None, "role": "boss"}]}
    assert wire.group_info(view) == GroupInfo("1@g.us", "S", None, "601", 5.0, (
        GroupParticipant("601", "superadmin", "9@lid"), GroupParticipant("602", "member")), True, False, True,
        "https://chat.whatsapp.com/x")
    assert wire.participant_results({"participants": [{"number": "601", "outcome": "added"},
                                                      {"number": "602", "outcome": "weird"}]}) == [
        ParticipantResult("601", "added"), ParticipantResult("602", "failed")]
    with pytest.raises(GroupRefused) as refused:
        wire.group_result({"ref": 1, "error": {"code": "not-group-admin", "message": "no"}})
    assert refused.value.code == "NOT_GROUP_ADMIN" and not refused.value.retryable
    with pytest.raises(NotConnected):
        wire.group_result({"ref": 1, "error": {"code": "not-ready", "message": "connection is hello"}})
    assert wire.group_result({"ref": 1, "result": {"left": "1@g.us"}}) == {"left": "1@g.us"}


async def _confirm() -> None:
    return None


def test_group_notifications_and_group_messages_from_the_network() -> None:
    joined = wire.group_event({"id": "GN1", "type": "group_participants", "chat": "1@g.us", "group": "1@g.us",
                               "change": "left", "participants": ["602", 7], "by": "601", "timestamp": 9.0}, _confirm)
    assert joined == GroupParticipantsChanged("GN1", "1@g.us", "left", ("602",), "601", 9.0)
    updated = wire.group_event({"id": "GN2", "type": "group_updated", "chat": "1@g.us", "changes": {"announce": True},
                                "by": "601", "timestamp": 9.0}, _confirm)
    assert updated == GroupUpdated("GN2", "1@g.us", {"announce": True}, "601", 9.0)
    assert wire.group_event({"id": "GN3", "type": "group_participants", "change": "exploded"}, _confirm) is None
    message = wire.inbound_message({"id": "3A1", "from": "602", "chat": "1@g.us", "type": "text", "text": "@601 hi",
                                    "participantLid": "9@lid", "mentions": ["601"]}, _confirm)
    assert (message.chat_id, message.sender, message.sender_lid, message.mentions) == (
        "1@g.us", "602", "9@lid", ("601",))


class RecordingSession:
    """Records the group calls ``run_group_op`` makes (the command runner is what is tested)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    async def update_participants(self, group_id: str, action: ParticipantAction,
                                  numbers: list[str]) -> list[ParticipantResult]:
        self.calls.append(("update_participants", (group_id, action, numbers)))
        return [ParticipantResult(n, "added") for n in numbers]

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupInfo:
        self.calls.append(("update_group", (group_id, changes)))
        return GroupInfo(group_id, changes.subject or "", is_admin=True, invite_link="https://chat.whatsapp.com/x")


async def test_group_commands_run_on_the_driver_and_answer_the_api_shape() -> None:
    session = RecordingSession()
    answer = await run_group_op(session, {"op": "participants", "groupId": "1@g.us",  # type: ignore[arg-type]
                                          "action": "add", "participants": ["601"]})
    assert answer == {"groupId": "1@g.us", "action": "add", "participants": [{"number": "601", "outcome": "added"}]}
    answer = await run_group_op(session, {"op": "update", "groupId": "1@g.us",  # type: ignore[arg-type]
                                          "subject": "New", "locked": True})
    group = answer["group"]
    assert isinstance(group, dict) and group["subject"] == "New" and group["inviteLink"] is not None
    assert session.calls[1] == ("update_group", ("1@g.us", GroupChanges(subject="New", locked=True)))
    for bad in ({"op": "explode"}, {"op": "participants", "groupId": "1@g.us", "action": "ban"},
                {"op": "info"}):
        with pytest.raises(GroupRefused) as refused:
            await run_group_op(session, bad)  # type: ignore[arg-type]
        assert refused.value.code == "BAD_GROUP_REQUEST"


def test_neonize_group_messages_carry_the_author_by_number_and_lid_and_the_mentions() -> None:
    from neonize.proto.Neonize_pb2 import Message as MessageEvent
    from neonize.proto.Neonize_pb2 import MessageInfo, MessageSource
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, ExtendedTextMessage, Message

    driver = NeonizeDriver(None, "postgresql://unused", schema="wa", sslmode="disable",  # type: ignore[arg-type]
                           media=MediaFetcher(1 << 20, 5))
    session = driver.session(SessionKey("neo", 0), lambda _event: None, None)
    text = Message(extendedTextMessage=ExtendedTextMessage(text="@601 hi", contextInfo=ContextInfo(
        stanzaID="3EB0AA", mentionedJID=["601@s.whatsapp.net"])))
    lid_addressed = MessageSource(Chat=_jid("120363", "g.us"), Sender=_jid("104812300551234", "lid"),
                                  SenderAlt=_jid("602"), IsGroup=True)
    event = MessageEvent(Info=MessageInfo(MessageSource=lid_addressed, ID="3A1", Timestamp=1767261600,
                                          Pushname="Ali"), Message=text)
    inbound = session._inbound(event)
    assert inbound is not None
    assert (inbound.chat_id, inbound.sender, inbound.sender_lid, inbound.mentions, inbound.quoted_id) == (
        "120363@g.us", "602", "104812300551234@lid", ("601",), "3EB0AA")
    pn_addressed = MessageSource(Chat=_jid("120363", "g.us"), Sender=_jid("602"),
                                 SenderAlt=_jid("104812300551234", "lid"), IsGroup=True)
    event = MessageEvent(Info=MessageInfo(MessageSource=pn_addressed, ID="3A2", Timestamp=1767261600),
                         Message=Message(conversation="hi"))
    inbound = session._inbound(event)
    assert inbound is not None and (inbound.sender, inbound.sender_lid, inbound.mentions) == (
        "602", "104812300551234@lid", ())


def test_contact_cards_round_trip_between_the_cloud_api_shape_and_vcards() -> None:
    from bisnesgpt.engines.wwebjs.vcards import card_of, contact_of

    card = card_of({"name": {"formatted_name": "Aisha; Rahman", "first_name": "Aisha"},
                    "phones": [{"phone": "+60 12-345 6789", "wa_id": "60123456789"}, {"phone": "+60 3-1234"}],
                    "emails": [{"email": "a@acme.example"}], "org": {"company": "Acme"}})
    assert card.name == "Aisha; Rahman" and card.numbers == ("60123456789", "6031234")
    assert "FN:Aisha\\; Rahman\n" in card.vcard and "TEL;type=CELL;waid=60123456789:+60 12-345 6789\n" in card.vcard
    assert contact_of(card) == {"name": {"formatted_name": "Aisha; Rahman"}, "org": {"company": "Acme"},
                                "phones": [{"phone": "+60 12-345 6789", "type": "CELL", "wa_id": "60123456789"},
                                           {"phone": "+60 3-1234", "type": "CELL", "wa_id": "6031234"}],
                                "emails": [{"email": "a@acme.example", "type": "INTERNET"}]}


def test_neonize_builds_cards_and_quotes_and_mentions_in_any_message() -> None:
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import LocationMessage, Message

    from bisnesgpt.engines.wwebjs.driver import ContactCard, OutgoingMessage
    from bisnesgpt.engines.wwebjs.drivers.neonize import NeonizeSession
    from bisnesgpt.engines.wwebjs.drivers.neonize_send import _with_context

    one = OutgoingMessage("contacts", "601@c.us", "m1", contacts=(ContactCard("A", "BEGIN:VCARD\nEND:VCARD\n"),))
    assert NeonizeSession._cards(one).contactMessage.displayName == "A"
    two = OutgoingMessage("contacts", "601@c.us", "m2", contacts=(ContactCard("A", "x"), ContactCard("B", "y")))
    array = NeonizeSession._cards(two).contactsArrayMessage
    assert [c.displayName for c in array.contacts] == ["A", "B"] and array.displayName == "2 contacts"
    located = Message(locationMessage=LocationMessage(degreesLatitude=1.0, degreesLongitude=2.0))
    reply = OutgoingMessage("location", "120363@g.us", "m3", reply_to="3EB0AA", mentions=("601",))
    context = _with_context(located, reply).locationMessage.contextInfo
    assert (context.stanzaID, context.participant, list(context.mentionedJID)) == (
        "3EB0AA", "120363@g.us", ["601@s.whatsapp.net"])
    untouched = Message(conversation="hi")
    assert _with_context(untouched, OutgoingMessage("text", "601@c.us", "m4")) is untouched


async def test_neonize_status_posts_carry_the_colour_and_refuse_a_recipient_list() -> None:
    from bisnesgpt.engines.wwebjs.driver import OutgoingMessage, StatusPost
    from bisnesgpt.engines.wwebjs.drivers.neonize import NeonizeSession

    driver = NeonizeDriver(None, "postgresql://unused", schema="wa", sslmode="disable",  # type: ignore[arg-type]
                           media=MediaFetcher(1 << 20, 5))
    session = driver.session(SessionKey("neo", 0), lambda _event: None, None)
    assert isinstance(session, NeonizeSession)
    post = OutgoingMessage("status", "status@broadcast", "m1", text="Open",
                           status=StatusPost("text", "#25D366", 2))
    built = (await session._status(None, post)).extendedTextMessage
    assert (built.text, built.backgroundArgb, built.font) == ("Open", 0xFF25D366, 2)
    listed = OutgoingMessage("status", "status@broadcast", "m2", text="x", status=StatusPost(recipients=("601",)))
    with pytest.raises(SendRejected) as refused:
        await session._status(None, listed)
    assert refused.value.code == "STATUS_RECIPIENTS_UNSUPPORTED"


def test_pacing_jitter_spreads_gaps_evenly_over_the_configured_range() -> None:
    import itertools
    import random

    from bisnesgpt.engines.wwebjs.pacing import SessionPacer

    pacer = SessionPacer(4, 400, clock=lambda: 0.0, rand=random.Random(16).random)  # 250 ms + up to 400 ms
    key = SessionKey("acme", 0)
    slots = [pacer.reserve(key, max_wait=10_000) for _ in range(2001)]
    gaps = [b - a for a, b in itertools.pairwise(slots) if a is not None and b is not None]
    assert min(gaps) >= 0.25 and max(gaps) <= 0.65
    assert abs(sum(gaps) / len(gaps) - 0.45) < 0.01  # the jitter's mean: half its range
    quarters = [sum(1 for g in gaps if 0.25 + q * 0.1 <= g < 0.35 + q * 0.1) for q in range(4)]
    assert all(abs(n - len(gaps) / 4) < len(gaps) * 0.05 for n in quarters), quarters  # uniform, not clumped


class RecordingClient:
    """Stands in for neonize's client at the call boundary: records each call, answers as neonize would."""

    def __init__(self, picture_error: Exception | None = None) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.picture_error = picture_error

    async def get_profile_picture(self, jid: object, params: object) -> object:
        from neonize.proto.Neonize_pb2 import ProfilePictureInfo

        self.calls.append(("get_profile_picture", (jid, params)))
        if self.picture_error is not None:
            raise self.picture_error
        return ProfilePictureInfo(URL="https://pps.whatsapp.net/p.jpg", ID="171")

    async def set_group_photo(self, jid: object, data: bytes) -> str:
        self.calls.append(("set_group_photo", (jid, data)))
        return "172"


async def test_neonize_group_pictures_use_set_group_photo_and_get_profile_picture() -> None:
    from bisnesgpt.engines.wwebjs.driver import MediaSource

    driver = NeonizeDriver(None, "postgresql://unused", schema="wa", sslmode="disable",  # type: ignore[arg-type]
                           media=MediaFetcher(1 << 20, 5))
    session = driver.session(SessionKey("neo", 0), lambda _event: None, None)
    client = RecordingClient()
    session.client, session.ready = client, True  # type: ignore[attr-defined]
    assert await session.group_picture("120363@g.us") == "https://pps.whatsapp.net/p.jpg"
    jid, params = client.calls[0][1]
    assert (jid.User, jid.Server, params.Preview) == ("120363", "g.us", False)  # type: ignore[attr-defined]
    assert await session.set_group_picture("120363@g.us", MediaSource(data=b"\xff\xd8jpeg", mime_type="image/jpeg")
                                           ) == "172"
    assert client.calls[1][0] == "set_group_photo" and client.calls[1][1][1] == b"\xff\xd8jpeg"
    with pytest.raises(GroupRefused) as refused:
        await session.remove_group_picture("120363@g.us")
    assert refused.value.code == "PICTURE_REMOVAL_UNSUPPORTED" and len(client.calls) == 2
    session.client = RecordingClient(Exception("profile picture not set: item-not-found"))  # type: ignore[attr-defined]
    assert await session.group_picture("120363@g.us") is None
    session.client = RecordingClient(Exception("forbidden (403)"))  # type: ignore[attr-defined]
    with pytest.raises(GroupRefused) as forbidden:
        await session.group_picture("120363@g.us")
    assert forbidden.value.code == "NOT_GROUP_ADMIN"


def test_neonize_view_once_media_and_animated_stickers_carry_their_flags() -> None:
    from neonize.proto.Neonize_pb2 import Message as MessageEvent
    from neonize.proto.Neonize_pb2 import MessageInfo, MessageSource
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import FutureProofMessage, ImageMessage, Message, StickerMessage

    from bisnesgpt.engines.wwebjs.drivers.neonize_inbound import inbound_of

    downloads: list[Any] = []

    def download(message: Any) -> Any:
        downloads.append(message)
        return lambda: None

    def event(message: Any) -> Any:
        source = MessageSource(Chat=_jid("601"), Sender=_jid("601"))
        return MessageEvent(Info=MessageInfo(MessageSource=source, ID="3A9", Timestamp=1767261600), Message=message)

    photo = ImageMessage(mimetype="image/jpeg", caption="once", fileLength=5)
    for wrapper in ("viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension"):
        wrapped = Message(**{wrapper: FutureProofMessage(message=Message(imageMessage=photo))})
        inbound = inbound_of(event(wrapped), download)
        assert inbound is not None and inbound.media is not None
        assert (inbound.type, inbound.media.view_once, inbound.media.caption, inbound.media.animated) == (
            "image", True, "once", False)
        assert downloads[-1].HasField("imageMessage")  # whatsmeow downloads the inner image
    flagged = inbound_of(event(Message(imageMessage=ImageMessage(mimetype="image/jpeg", viewOnce=True))), download)
    assert flagged is not None and flagged.media is not None and flagged.media.view_once
    plain = inbound_of(event(Message(imageMessage=ImageMessage(mimetype="image/jpeg"))), download)
    assert plain is not None and plain.media is not None and not plain.media.view_once
    for animated in (True, False):
        sticker = inbound_of(event(Message(stickerMessage=StickerMessage(mimetype="image/webp",
                                                                          isAnimated=animated))), download)
        assert sticker is not None and sticker.media is not None
        assert (sticker.type, sticker.media.animated, sticker.media.view_once) == ("sticker", animated, False)
