"""A thin, observable wrapper around a slixmpp ClientXMPP for the interop scenarios.

Every presence, message and roster push the client receives is recorded; `wait_for` waits
(with a deadline) until one matching a predicate has arrived, and fails naming what it waited for
and listing what did arrive. slixmpp's own subscription automation is switched off so that
each scenario sends exactly the stanzas it describes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import xml.etree.ElementTree as ET
from typing import Any, Callable

from slixmpp import JID, ClientXMPP

log = logging.getLogger("interop.slix")

STEP_TIMEOUT = 10.0  # seconds for any one expected stanza or step
NS_ROSTER = "jabber:iq:roster"
NS_DELAY = "urn:xmpp:delay"


class ScenarioFailure(AssertionError):
    pass


def insecure_tls_context() -> ssl.SSLContext:
    """The servers under test use throw-away self-signed certificates."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Inbox:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.items: list[tuple[str, Any]] = []  # (kind, stanza)
        self._changed = asyncio.Event()

    def add(self, kind: str, stanza: Any) -> None:
        self.items.append((kind, stanza))
        self._changed.set()

    async def wait_for(self, kind: str, pred: Callable[[Any], bool], what: str,
                       timeout: float = STEP_TIMEOUT) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for k, st in self.items:
                if k == kind and pred(st):
                    return st
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = "\n    ".join(str(st) for k, st in self.items if k == kind) or "(none)"
                raise ScenarioFailure(
                    f"{self.owner}: {what} did not arrive within {timeout:.0f} s; "
                    f"{kind} stanzas received:\n    {seen}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


class SlixUser:
    """One account's session over a given transport ('starttls' or 'directtls')."""

    def __init__(self, label: str, jid: str, password: str, address: tuple[str, int],
                 transport: str, resource: str) -> None:
        self.label = label
        self.jid = JID(jid)
        self.password = password
        self.address = address
        self.transport = transport
        self.resource = resource
        self.client: ClientXMPP | None = None
        self.inbox = Inbox(label)
        self.mechanism: str | None = None

    @property
    def full_jid(self) -> JID:
        assert self.client is not None
        return self.client.boundjid

    async def connect(self, timeout: float = STEP_TIMEOUT) -> None:
        c = ClientXMPP(f"{self.jid.bare}/{self.resource}", self.password,
                       ssl_context=insecure_tls_context())
        self.client = c
        c.enable_plaintext = False
        c.enable_starttls = self.transport == "starttls"
        c.enable_direct_tls = self.transport == "directtls"
        # No automatic answers to subscription requests: the scenario sends them itself.
        c.roster.auto_authorize = None
        c.roster.auto_subscribe = False
        c.add_event_handler("presence", lambda p: self.inbox.add("presence", p))
        c.add_event_handler("message", lambda m: self.inbox.add("message", m))
        c.add_event_handler(
            "roster_update", lambda iq: iq["type"] == "set" and self.inbox.add("roster_push", iq))

        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def finish(result: Any) -> None:
            if not done.done():
                done.set_result(result)

        def on_auth_success(_: Any) -> None:
            mech = c.plugin["feature_mechanisms"].mech
            self.mechanism = getattr(mech, "name", None)

        c.add_event_handler("auth_success", on_auth_success)
        c.add_event_handler("session_start", lambda _: finish(None))
        c.add_event_handler("failed_all_auth", lambda _: finish("authentication failed"))
        c.add_event_handler("failed_auth", lambda s: log.info("%s: SASL failure %s", self.label, s))
        c.add_event_handler("stream_error", lambda e: finish(f"stream error: {e}"))
        c.add_event_handler("connection_failed", lambda e: finish(f"connection failed: {e}"))
        c.add_event_handler("disconnected",
                            lambda r: finish(f"disconnected before session start ({r})"))
        host, port = self.address
        c.connect(host, port)
        try:
            err = await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            c.abort()
            raise ScenarioFailure(
                f"{self.label}: no session within {timeout:.0f} s over {self.transport} to "
                f"{host}:{port} (SASL mechanism chosen: {self.mechanism})") from None
        if err is not None:
            c.abort()
            raise ScenarioFailure(
                f"{self.label}: login as {self.jid} over {self.transport} to {host}:{port} "
                f"failed: {err}")
        log.info("%s: session %s over %s, SASL %s", self.label, c.boundjid, self.transport,
                 self.mechanism)

    async def disconnect(self) -> None:
        if self.client is None:
            return
        c, self.client = self.client, None
        if c.transport is None:
            return
        try:
            await asyncio.wait_for(c.disconnect(wait=5.0), 8)
        except (asyncio.TimeoutError, Exception) as e:  # a failure to close is not the point here
            log.info("%s: disconnect: %r", self.label, e)
            c.abort()
        # keep the old session's view of the client around for attribute access
        self._last = c

    # ---- sending -----------------------------------------------------------------------------

    def send_presence(self, to: str | None = None, ptype: str | None = None) -> None:
        assert self.client is not None
        self.client.send_presence(pto=to, ptype=ptype)

    def send_chat(self, to: str, body: str) -> None:
        assert self.client is not None
        self.client.send_message(mto=JID(to), mbody=body, mtype="chat")

    async def roster_set(self, contact: str, name: str) -> None:
        assert self.client is not None
        query = ET.Element(f"{{{NS_ROSTER}}}query")
        ET.SubElement(query, f"{{{NS_ROSTER}}}item", jid=contact, name=name)
        iq = self.client.make_iq_set()
        iq.xml.append(query)
        try:
            res = await iq.send(timeout=STEP_TIMEOUT)
        except Exception as e:
            raise ScenarioFailure(f"{self.label}: roster set for {contact} failed: {e}") from e
        if res["type"] != "result":
            raise ScenarioFailure(f"{self.label}: roster set for {contact} answered {res}")

    async def roster_get(self) -> dict[str, dict[str, str]]:
        """jid -> {'subscription': ..., 'ask': ..., 'name': ...} from a fresh roster get."""
        assert self.client is not None
        iq = self.client.make_iq_get(queryxmlns=NS_ROSTER)
        try:
            res = await iq.send(timeout=STEP_TIMEOUT)
        except Exception as e:
            raise ScenarioFailure(f"{self.label}: roster get failed: {e}") from e
        return roster_items(res)


def roster_items(iq: Any) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    query = iq.xml.find(f"{{{NS_ROSTER}}}query")
    if query is None:
        return out
    for item in query.findall(f"{{{NS_ROSTER}}}item"):
        out[item.get("jid", "")] = {
            "subscription": item.get("subscription", "none"),
            "ask": item.get("ask", ""),
            "name": item.get("name", ""),
        }
    return out


def is_presence(ptype: str, frm: str, bare: bool) -> Callable[[Any], bool]:
    """Predicate: a presence of `ptype` ('available', 'subscribe', ...) from `frm`."""
    def pred(p: Any) -> bool:
        f = p["from"]
        who = f.bare if bare else f.full
        return p["type"] == ptype and who == frm
    return pred


def is_available_from(full: str) -> Callable[[Any], bool]:
    def pred(p: Any) -> bool:
        # slixmpp reports an available presence's type as 'available' or its <show/> value
        return p["from"].full == full and p["type"] not in (
            "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "error",
            "probe")
    return pred


def roster_push_with(contact: str, subscription: str) -> Callable[[Any], bool]:
    def pred(iq: Any) -> bool:
        item = roster_items(iq).get(contact)
        return item is not None and item["subscription"] == subscription
    return pred
