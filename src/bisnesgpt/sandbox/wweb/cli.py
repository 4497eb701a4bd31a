"""``bisnesgpt sandbox wweb …``: run the sandbox WhatsApp-Web network and act as the phone.

``serve`` runs the network; the other commands talk to a running one over HTTP (the URL
defaults to WWEBJS_SANDBOX_URL): ``scan`` links a session waiting for its QR or pairing
code, ``inbound`` sends a message to a session (``--chat`` for a group), ``fault`` injects a
fault, ``group`` acts on a group as another phone, ``sessions``, ``messages`` and ``groups``
show what the network saw.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import typer

from bisnesgpt.cli.common import command_group, console, settings_or_exit
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.jsonvalues import as_strings
from bisnesgpt.sandbox.wweb.config import NetworkConfig

if TYPE_CHECKING:
    from bisnesgpt.sandbox.wweb.network import SessionView
    from bisnesgpt.sandbox.wweb.records import MessageRow
    from bisnesgpt.sandbox.wweb.routing import InjectedInbound
    from bisnesgpt.sandbox.wweb.sessions import Linked

wweb_app = command_group(help="The sandbox WhatsApp-Web network (a stand-in for WhatsApp's servers).")

URL_OPTION = typer.Option(None, "--url", help="sandbox network URL (default: WWEBJS_SANDBOX_URL)")
MEDIA_OPTION = typer.Option(None, "--media", exists=True, dir_okay=False,
                            help="send this file as media (uploaded to the network's media server)")

MENTION_OPTION = typer.Option([], "--mention", help="a number the text @-mentions (repeatable)")
CONTACT_OPTION = typer.Option([], "--contact", help="send contact cards instead: NAME:NUMBER (repeatable)")
OPTION_OPTION = typer.Option([], "--option", "-o", help="an option voted for (repeatable)")
PARTICIPANT_OPTION = typer.Option([], "--participant", "-p", help="a number to add/remove/... (repeatable)")


def _url(url: str | None) -> str:
    return (url or settings_or_exit().wwebjs_sandbox_url).rstrip("/")


def _request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The admin API's answer; a network that cannot be reached ends the command."""
    try:
        return httpx.request(method, url, timeout=15, **kwargs)
    except httpx.HTTPError as exc:
        typer.echo(f"bisnesgpt: cannot reach the sandbox network at {url}: {exc} (is `bisnesgpt sandbox wweb serve` "
                   "running there? --url or WWEBJS_SANDBOX_URL says where)", err=True)
        raise typer.Exit(1) from None


def _call(method: str, url: str, **kwargs: Any) -> Any:
    """The admin API's JSON answer (the callers know its shape); an error ends the command."""
    return _answer(_request(method, url, **kwargs))


def _answer(response: httpx.Response) -> Any:
    """The JSON of a successful answer; an error answer ends the command, saying what it was."""
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        typer.echo(f"bisnesgpt: sandbox answered {response.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    return response.json()


@wweb_app.command()
def serve(
    port: int = typer.Option(3010, help="port to listen on"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    data_dir: str = typer.Option(None, help="where records persist (default: $DATA_DIR/sandbox-wweb)"),
    memory: bool = typer.Option(False, "--memory", help="keep records in memory only"),
    # Defaults are the network's own (NetworkConfig), written once there.
    ack_server_ms: int = typer.Option(NetworkConfig.ack_server_ms, help="delay of the server ack (sent)"),
    ack_device_ms: int = typer.Option(NetworkConfig.ack_device_ms, help="delay of the device ack (delivered)"),
    ack_read_ms: int = typer.Option(NetworkConfig.ack_read_ms, help="delay of the read receipt"),
    no_read: bool = typer.Option(not NetworkConfig.auto_read, "--no-read", help="recipients never read"),
    result_delay_ms: int = typer.Option(NetworkConfig.result_delay_ms,
                                        help="answer sends this much later (records them at once)"),
    latency_ms: int = typer.Option(NetworkConfig.latency_ms, "--latency-ms",
                                   help="delay before each send is handled"),
    latency_jitter_ms: int = typer.Option(NetworkConfig.latency_jitter_ms, "--latency-jitter-ms",
                                          help="random extra delay (0..this) per send: sends in flight together "
                                               "may overtake each other"),
    qr_rotate_ms: int = typer.Option(NetworkConfig.qr_rotate_ms, help="how often an unscanned QR rotates"),
    auth_delay_ms: int = typer.Option(NetworkConfig.auth_delay_ms, help="pair_success -> ready"),
    ready_delay_ms: int = typer.Option(NetworkConfig.ready_delay_ms, help="authenticated (resumed) -> ready"),
    keepalive_interval: float = typer.Option(NetworkConfig.keepalive_interval, help="seconds between client pings"),
    keepalive_timeout: float = typer.Option(NetworkConfig.keepalive_timeout,
                                            help="seconds without a pong before a client gives up"),
) -> None:
    """Run the sandbox network (WebSocket for drivers, HTTP admin API)."""
    from bisnesgpt.sandbox.wweb.server import serve as run

    settings = settings_or_exit()
    config = NetworkConfig(ack_server_ms=ack_server_ms, ack_device_ms=ack_device_ms, ack_read_ms=ack_read_ms,
                           auto_read=not no_read, result_delay_ms=result_delay_ms, qr_rotate_ms=qr_rotate_ms,
                           latency_ms=max(0, latency_ms), latency_jitter_ms=max(0, latency_jitter_ms),
                           auth_delay_ms=auth_delay_ms,
                           ready_delay_ms=ready_delay_ms, keepalive_interval=keepalive_interval,
                           keepalive_timeout=keepalive_timeout)
    directory = None if memory else (Path(data_dir) if data_dir else settings.data_dir / "sandbox-wweb")
    run(host=host, port=port, data_dir=directory, config=config, log_level=settings.log_level)


@wweb_app.command()
def scan(
    company_id: str,
    phone_index: int,
    phone: str = typer.Option(None, help="the phone number that scans (default: derived)"),
    code: str = typer.Option(None, help="enter this pairing code instead of scanning the QR"),
    wait: float = typer.Option(30.0, help="seconds to wait for the session to show its QR (a phone just added "
                                          "takes a moment); 0: do not wait"),
    url: str = URL_OPTION,
) -> None:
    """Scan the session's QR code (or enter its pairing code) as the phone would."""
    body = {k: v for k, v in {"phone": phone, "code": code}.items() if v}
    deadline = time.monotonic() + wait
    while True:
        response = _request("POST", f"{_url(url)}/admin/sessions/{company_id}/{phone_index}/scan", json=body)
        if response.status_code != 409 or time.monotonic() >= deadline:  # 409: not waiting to be paired (yet)
            break
        time.sleep(0.5)
    result: Linked = _answer(response)
    console.print(f"linked {result['session']} as {result['phone']} (device {result['deviceId']})")


@wweb_app.command()
def inbound(
    company_id: str,
    phone_index: int,
    sender: str = typer.Option(..., "--from", help="sender's phone number"),
    text: str = typer.Option("hello from the sandbox", help="message text (a media message's caption)"),
    media: Path | None = MEDIA_OPTION,
    kind: str = typer.Option("document", "--type", help="with --media: image, video, audio, document or sticker"),
    mime: str = typer.Option("application/octet-stream", "--mime", help="with --media: its MIME type"),
    chat: str = typer.Option(None, "--chat", help="a group id (<id>@g.us) --from writes in, instead of a 1:1 chat"),
    mention: list[str] = MENTION_OPTION,
    location: str = typer.Option(None, "--location", help="send a location instead: LAT,LON[,NAME]"),
    contact: list[str] = CONTACT_OPTION,
    view_once: bool = typer.Option(False, "--view-once", help="with --media: view-once (image, video, audio)"),
    animated: bool = typer.Option(False, "--animated", help="with --media --type sticker: an animated sticker"),
    as_lid: bool = typer.Option(False, "--lid", help="write as a LID-addressed contact (from its <digits>@lid)"),
    hide_number: bool = typer.Option(False, "--hide-number", help="with --lid: WhatsApp does not reveal the number"),
    url: str = URL_OPTION,
) -> None:
    """Send a text (or, with ``--media``, a file; ``--location``, a pin; ``--contact``, cards) to the
    session's phone from ``--from``."""
    body: JsonObject = {"from": sender, "type": "text", "text": text}
    if location:
        latitude, longitude, *name = location.split(",", 2)
        body = {"from": sender, "type": "location", "location": {
            "latitude": float(latitude), "longitude": float(longitude), "name": name[0] if name else None}}
    if contact:
        body = {"from": sender, "type": "contacts", "contacts": [_card(c) for c in contact]}
    if media is not None:
        with media.open("rb") as handle:
            uploaded = _call("POST", f"{_url(url)}/media/upload", params={"name": media.name}, content=handle,
                             headers={"Content-Type": mime})
        body = {"from": sender, "type": kind, "text": text if text != "hello from the sandbox" else None,
                "media": {**uploaded, "filename": media.name, **({"viewOnce": True} if view_once else {}),
                          **({"animated": True} if animated else {})}}
    if chat:
        body["chat"] = chat
    if mention:
        body["mentions"] = list(mention)
    if as_lid:
        body.update({"lid": True, "revealNumber": not hide_number})
    result: InjectedInbound = _call("POST", f"{_url(url)}/admin/sessions/{company_id}/{phone_index}/inbound",
                                    json=body)
    console.print(f"message {result['id']} {'delivered' if result['pushed'] else 'queued until the session is ready'}")


@wweb_app.command()
def fault(
    company_id: str,
    phone_index: int,
    kind: str = typer.Argument(..., help="disconnect | logout | hang | flap | stall | slow_sends | memory_growth"
                               " | freeze | clear"),
    seconds: float = typer.Option(None, help="hang / freeze duration"),
    count: int = typer.Option(None, help="flap: how many disconnects; stall: how many connections stall"),
    after_ms: int = typer.Option(None, help="flap: ms after ready before each disconnect"),
    delay_ms: int = typer.Option(None, help="slow_sends: extra ms per send"),
    mb_per_second: float = typer.Option(None, help="memory_growth: MB per second"),
    max_mb: float = typer.Option(None, help="memory_growth: stop at this many MB"),
    url: str = URL_OPTION,
) -> None:
    """Inject a fault into a session (network-side, or acted out inside the driver)."""
    body: JsonObject = {"type": kind, "seconds": seconds, "count": count, "afterMs": after_ms,
                            "delayMs": delay_ms, "mbPerSecond": mb_per_second, "maxMb": max_mb}
    result = _call("POST", f"{_url(url)}/admin/sessions/{company_id}/{phone_index}/faults",
                   json={k: v for k, v in body.items() if v is not None})
    console.print(json.dumps(result, indent=2))


@wweb_app.command()
def sessions(url: str = URL_OPTION) -> None:
    """The sessions the network knows (connection state, device, counts)."""
    views: list[SessionView] = _call("GET", f"{_url(url)}/admin/sessions")["sessions"]
    for view in views:
        phone = view["device"]["phone"] if view["device"] else "-"
        console.print(f"{view['session']:<24} {view['state']:<14} phone={phone:<14} "
                      f"sent={view['sent']} received={view['received']} overlaps={view['overlaps']}")


@wweb_app.command()
def messages(
    session: str = typer.Option(None, help="<company>:<phone index>"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    url: str = URL_OPTION,
) -> None:
    """Every message the network recorded (with receive counts and ack levels)."""
    params = {"session": session} if session else {}
    result = _call("GET", f"{_url(url)}/admin/messages", params=params)
    if as_json:
        console.print_json(json.dumps(result))
        return
    found: list[MessageRow] = result["messages"]
    for m in found:
        console.print(f"{m['session']:<20} {m['direction']:<3} {m['id']:<24} {m['kind']:<9} ack={m['ack']} "
                      f"received={m['received_count']} {m['chat']}{_detail(m['body'])}")


def _card(given: str) -> JsonObject:
    """A contact card for ``NAME:NUMBER`` (the number on WhatsApp)."""
    name, _, number = given.rpartition(":")
    digits = "".join(ch for ch in number if ch.isdigit())
    vcard = f"BEGIN:VCARD\nVERSION:3.0\nFN:{name or number}\nTEL;type=CELL;waid={digits}:+{digits}\nEND:VCARD\n"
    return {"name": name or number, "vcard": vcard}


def _detail(body: JsonObject) -> str:
    """What a message line adds for groups: a notification's change, a group message's author, mentions."""
    parts = []
    if body.get("change"):
        parts.append(f"{body['change']} {','.join(as_strings(body.get('participants') or []))} by={body.get('by')}")
    if isinstance(body.get("changes"), dict):
        parts.append(f"changed {json.dumps(body['changes'])} by={body.get('by')}")
    if body.get("participantLid"):
        parts.append(f"from={body.get('from')} lid={body['participantLid']}")
    if body.get("forwarded"):
        parts.append("forwarded")
    if body.get("previewUrl"):
        parts.append("preview")
    if body.get("mentions"):
        parts.append(f"mentions={','.join(as_strings(body['mentions']))}")
    poll = body.get("poll")
    if isinstance(poll, dict):
        tallies = body.get("tallies")
        parts.append(f"poll {poll.get('name')!r} options={','.join(as_strings(poll.get('options') or []))} "
                     f"pick={poll.get('selectableCount')}" + (f" tallies={json.dumps(tallies)}" if tallies else ""))
    if body.get("pollId"):
        parts.append(f"vote on {body['pollId']}: {','.join(as_strings(body.get('selected') or [])) or '(none)'}")
    cards = body.get("contacts")
    if isinstance(cards, list):
        parts.append("contacts " + ", ".join(str(c.get("name")) for c in cards if isinstance(c, dict)))
    pin = body.get("location")
    if isinstance(pin, dict):
        parts.append(f"location {pin.get('latitude')},{pin.get('longitude')} {pin.get('name') or ''}".rstrip())
    return "  " + " ".join(parts) if parts else ""


@wweb_app.command()
def groups(as_json: bool = typer.Option(False, "--json", help="print JSON"), url: str = URL_OPTION) -> None:
    """Every group on the network: members with roles, announcement-only, locked, invite link."""
    result = _call("GET", f"{_url(url)}/admin/groups")
    if as_json:
        console.print_json(json.dumps(result))
        return
    for g in result["groups"]:
        members = " ".join(f"{m['number']}({m['role'][0]})" for m in g["participants"])
        console.print(f"{g['id']:<28} {g['subject']!s:<24} announce={g['announce']} locked={g['locked']} "
                      f"{g['inviteLink']}  {members}")


@wweb_app.command()
def group(
    action: str = typer.Argument(..., help="create | join | leave | add | remove | promote | demote | update"),
    group_id: str = typer.Argument("", help="the group (<id>@g.us); not for create"),
    by: str = typer.Option(..., "--by", help="the phone number doing it"),
    participant: list[str] = PARTICIPANT_OPTION,
    subject: str = typer.Option(None, help="create/update: the subject"),
    description: str = typer.Option(None, help="update: the description"),
    announce: bool = typer.Option(None, "--announce/--no-announce", help="update: only admins send"),
    locked: bool = typer.Option(None, "--locked/--unlocked", help="update: only admins change the info"),
    url: str = URL_OPTION,
) -> None:
    """Act on a group as another phone ``--by`` (its members' sessions get the notifications)."""
    body: JsonObject = {"action": action, "by": by, "participants": list(participant)}
    if action == "create":
        body["subject"] = subject
        result = _call("POST", f"{_url(url)}/admin/groups", json=body)
    else:
        changes: JsonObject = {"subject": subject, "description": description, "announce": announce,
                               "locked": locked}
        body["changes"] = {k: v for k, v in changes.items() if v is not None}
        result = _call("POST", f"{_url(url)}/admin/groups/{group_id}/actions", json=body)
    console.print(f"{result['id']} {result['subject']} members={result['size']}")


@wweb_app.command()
def vote(
    company_id: str,
    phone_index: int,
    voter: str = typer.Option(..., "--from", help="the voter's phone number"),
    poll: str = typer.Option(..., "--poll", help="the poll's message id (as the session sent it)"),
    option: list[str] = OPTION_OPTION,
    chat: str = typer.Option(None, "--chat", help="the group the poll is in (default: the voter's 1:1 chat)"),
    url: str = URL_OPTION,
) -> None:
    """Vote on a poll the session sent, as ``--from`` (their whole choice; no --option takes the vote back)."""
    body: JsonObject = {"from": voter, "type": "poll_vote", "pollId": poll, "selected": list(option)}
    if chat:
        body["chat"] = chat
    result: InjectedInbound = _call("POST", f"{_url(url)}/admin/sessions/{company_id}/{phone_index}/inbound",
                                    json=body)
    console.print(f"vote {result['id']} {'delivered' if result['pushed'] else 'queued until the session is ready'}")
