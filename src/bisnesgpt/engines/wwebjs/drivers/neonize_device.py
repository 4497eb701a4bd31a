"""neonize's session store: whatsmeow's DSN, the paired device's JID, and whatsmeow's errors in plain words."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.engines.wwebjs.driver import AuthState


def store_dsn(database_url: str, schema: str, sslmode: str, application_name: str | None = None) -> str:
    """DATABASE_URL for lib/pq with whatsmeow's schema on the search path."""
    parts = urlsplit(database_url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("sslmode", sslmode)
    query["search_path"] = schema
    if application_name:
        query["application_name"] = application_name
    scheme = "postgres" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(query)))


def readable_error(exc: BaseException) -> str:
    """What went wrong in whatsmeow's words, saying so plainly when WhatsApp cannot be reached."""
    text = str(exc) or type(exc).__name__
    if "web.whatsapp.com" in text and ("no such host" in text or "dial" in text):
        return f"cannot reach WhatsApp (web.whatsapp.com): {text}"
    return text


@dataclass(frozen=True)
class DeviceJid:
    """The paired device's JID: all our session store keeps for neonize (its keys are whatsmeow's)."""

    user: str
    server: str
    device: int = 0
    raw_agent: int = 0

    @classmethod
    def from_auth(cls, auth_state: AuthState) -> DeviceJid | None:
        """The JID stored in ``auth_state`` (``{"jid": {user, server, device, rawAgent}}``); None if unpaired."""
        jid = auth_state.get("jid")
        if not isinstance(jid, dict) or not jid:
            return None
        device, raw_agent = jid.get("device", 0), jid.get("rawAgent", 0)
        return cls(str(jid["user"]), str(jid["server"]), int(device) if isinstance(device, int | str) else 0,
                   int(raw_agent) if isinstance(raw_agent, int | str) else 0)

    def as_auth(self) -> JsonObject:
        """The ``auth_state`` that resumes this device."""
        return {"jid": {"user": self.user, "server": self.server, "device": self.device, "rawAgent": self.raw_agent}}
