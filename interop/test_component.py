"""External component interop (XEP-0114, Jabber Component Protocol): slixmpp's ComponentXMPP
connects to the server's component port as `echo.localhost`, authenticates with the shared
secret (`<handshake/>`, §3), and echoes every chat message it gets; a slixmpp user (STARTTLS)
sends to `echo@echo.localhost` and receives the echo from that JID. A second ComponentXMPP
with a wrong secret is refused with `<not-authorized/>`.

The component and its secret are in the config harness/targets.py writes. Starling only: the
reference servers of this suite have no external component configured (the self-test
stand-in, selftest/fake-starling, configures Prosody's from the same config).
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from slixmpp.componentxmpp import ComponentXMPP

from harness.slix import ScenarioFailure, SlixUser

SCENARIO_TIMEOUT = 30.0
STEP = 10.0


@pytest.fixture
def starling(target):
    if target.name != "starling":
        pytest.skip(f"{target.name}: no external component is configured on the reference "
                    "servers of this suite")
    return target


class EchoComponent:
    """A ComponentXMPP that answers each message with `echo: BODY`, from the JID it was sent to."""

    def __init__(self, domain: str, secret: str, host: str, port: int) -> None:
        self.xmpp = ComponentXMPP(domain, secret, host, port)
        self.received: list = []
        self.xmpp.add_event_handler("message", self._on_message)

    def _on_message(self, msg) -> None:
        self.received.append(msg)
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.xmpp.send_message(mto=msg["from"], mfrom=msg["to"], mtype=msg["type"],
                                   mbody=f"echo: {msg['body']}")

    async def connect(self) -> str | None:
        """None when the handshake succeeded, else what happened instead."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def finish(result) -> None:
            if not done.done():
                done.set_result(result)

        x = self.xmpp
        x.add_event_handler("session_start", lambda _: finish(None))
        x.add_event_handler("stream_error", lambda e: finish(f"stream error: {e['condition']}"))
        x.add_event_handler("connection_failed", lambda e: finish(f"connection failed: {e}"))
        x.add_event_handler("disconnected", lambda r: finish(f"disconnected ({r})"))
        x.connect()
        try:
            return await asyncio.wait_for(done, STEP)
        except asyncio.TimeoutError:
            return f"no handshake answer within {STEP:.0f} s"

    async def disconnect(self) -> None:
        if self.xmpp.transport is None:
            return
        try:
            await asyncio.wait_for(self.xmpp.disconnect(wait=2.0), 5)
        except Exception:  # closing is not what is tested
            self.xmpp.abort()


def run(coro) -> None:
    async def main():
        try:
            await asyncio.wait_for(coro, SCENARIO_TIMEOUT)
        except asyncio.TimeoutError:
            raise ScenarioFailure(f"scenario did not finish within {SCENARIO_TIMEOUT:.0f} s") \
                from None

    try:
        asyncio.run(main())
    except ScenarioFailure as e:
        pytest.fail(str(e), pytrace=False)


def test_component_echoes_to_a_user(starling, endpoints, accounts):
    ja, pa = accounts.new("alice")
    domain = starling.component_domain
    body = f"ping <&> ünïcødé {secrets.token_hex(4)}"

    async def scenario():
        comp = EchoComponent(domain, starling.component_secret, endpoints.host,
                             starling.component_port)
        alice = SlixUser("alice", ja, pa, endpoints.address("starttls"), "starttls",
                         f"slix-alice-{secrets.token_hex(3)}")
        try:
            err = await comp.connect()
            if err is not None:
                raise ScenarioFailure(f"component {domain}: handshake failed: {err}")
            await alice.connect()
            alice.send_presence()
            alice.send_chat(f"echo@{domain}", body)
            m = await alice.inbox.wait_for(
                "message", lambda m: m["body"] == f"echo: {body}",
                f"the echo of {body!r} from echo@{domain}")
            if m["from"].bare != f"echo@{domain}" or m["type"] != "chat":
                raise ScenarioFailure(f"echo came from={m['from']} type={m['type']}; expected "
                                      f"echo@{domain}, chat")
            got = [r for r in comp.received if r["body"] == body]
            if not got or got[0]["from"] != alice.full_jid:
                raise ScenarioFailure(f"the component saw {[str(r) for r in comp.received]}; "
                                      f"expected the message from {alice.full_jid}")
        finally:
            await alice.disconnect()
            await comp.disconnect()

    run(scenario())


def test_component_wrong_secret_is_refused(starling, endpoints):
    async def scenario():
        comp = EchoComponent(starling.component_domain, "not-the-secret", endpoints.host,
                             starling.component_port)
        try:
            err = await comp.connect()
        finally:
            await comp.disconnect()
        if err is None:
            raise ScenarioFailure("a component with a wrong secret was accepted")
        if "not-authorized" not in err:
            raise ScenarioFailure(f"expected <not-authorized/>, got: {err}")

    run(scenario())
