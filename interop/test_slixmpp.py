"""Interop scenarios with slixmpp (PyPI) over STARTTLS (c2s port) and Direct TLS (XEP-0368).

a login            SASL (SCRAM) succeeds, a resource is bound
b subscription     RFC 6121 §3: roster set, subscribe/subscribed both ways, both rosters 'both'
c presence         RFC 6121 §4: available presence from the contact's full JID, after the
                   subscription is approved and again after a fresh login (probe + broadcast)
d chat             RFC 6121 §5: chat both ways, exact body, from = the sender's full JID
e offline          RFC 6121 §8.5.2.1.1 / XEP-0160 / XEP-0203: a message to an offline user is
                   delivered at its next login with <delay xmlns='urn:xmpp:delay'/>
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from harness.slix import (NS_DELAY, ScenarioFailure, SlixUser, is_available_from, is_presence,
                          roster_push_with)

SCENARIO_TIMEOUT = 30.0
TRANSPORTS = ["starttls", "directtls"]


@pytest.fixture(params=TRANSPORTS)
def transport(request, target):
    reason = target.unsupported.get(request.param)
    if reason:
        pytest.skip(f"{target.name}: {reason}")
    return request.param


def run(coro_fn):
    """Run one scenario with its overall deadline; always disconnect its clients."""
    users: list[SlixUser] = []

    async def main():
        try:
            await asyncio.wait_for(coro_fn(users), SCENARIO_TIMEOUT)
        except asyncio.TimeoutError:
            raise ScenarioFailure(f"scenario did not finish within {SCENARIO_TIMEOUT:.0f} s") \
                from None
        finally:
            for u in users:
                await u.disconnect()

    try:
        asyncio.run(main())
    except ScenarioFailure as e:
        pytest.fail(str(e), pytrace=False)


def make_user(users, endpoints, transport, label, jid, password, resource=None):
    u = SlixUser(label, jid, password, endpoints.address(transport), transport,
                 resource or f"slix-{label}-{secrets.token_hex(3)}")
    users.append(u)
    return u


async def online(*users: SlixUser) -> None:
    """Log in, get the roster, send initial presence: what every real client does first.

    The roster get makes the session an "interested resource" (RFC 6121 2.1.6) that receives
    roster pushes; the initial presence makes it "available" (RFC 6121 4.2).
    """
    await asyncio.gather(*(u.connect() for u in users))
    for u in users:
        await u.roster_get()
        u.send_presence()


async def subscribe_both_ways(a: SlixUser, b: SlixUser) -> None:
    a_bare, b_bare = str(a.jid.bare), str(b.jid.bare)
    # A puts B on its roster; the server pushes the new item to A
    await a.roster_set(b_bare, "Bee")
    await a.inbox.wait_for("roster_push", roster_push_with(b_bare, "none"),
                           f"roster push adding {b_bare}")
    # A -> B subscribe; B sees the request from A's bare JID and approves it
    a.send_presence(to=b_bare, ptype="subscribe")
    await b.inbox.wait_for("presence", is_presence("subscribe", a_bare, bare=True),
                           f"<presence type='subscribe'/> from {a_bare}")
    b.send_presence(to=a_bare, ptype="subscribed")
    await a.inbox.wait_for("presence", is_presence("subscribed", b_bare, bare=True),
                           f"<presence type='subscribed'/> from {b_bare}")
    await a.inbox.wait_for("roster_push", roster_push_with(b_bare, "to"),
                           f"roster push with {b_bare} subscription='to'")
    await b.inbox.wait_for("roster_push", roster_push_with(a_bare, "from"),
                           f"roster push with {a_bare} subscription='from'")
    # B subscribes back; A approves
    b.send_presence(to=a_bare, ptype="subscribe")
    await a.inbox.wait_for("presence", is_presence("subscribe", b_bare, bare=True),
                           f"<presence type='subscribe'/> from {b_bare}")
    a.send_presence(to=b_bare, ptype="subscribed")
    await b.inbox.wait_for("presence", is_presence("subscribed", a_bare, bare=True),
                           f"<presence type='subscribed'/> from {a_bare}")
    await a.inbox.wait_for("roster_push", roster_push_with(b_bare, "both"),
                           f"roster push with {b_bare} subscription='both'")
    await b.inbox.wait_for("roster_push", roster_push_with(a_bare, "both"),
                           f"roster push with {a_bare} subscription='both'")


def test_a_login(target, endpoints, accounts, transport):
    jid, pw = accounts.new("alice")

    async def scenario(users):
        a = make_user(users, endpoints, transport, "alice", jid, pw)
        await a.connect()
        assert a.full_jid.bare == jid, f"bound JID {a.full_jid} is not for {jid}"
        assert a.full_jid.resource, f"no resource bound: {a.full_jid}"
        assert a.mechanism and a.mechanism.startswith("SCRAM-"), \
            f"logged in with SASL {a.mechanism!r}, expected a SCRAM mechanism"
        print(f"slixmpp/{transport}: logged in as {a.full_jid} with {a.mechanism}")
        # and the session answers an IQ: an (empty) roster get
        assert await a.roster_get() == {}, "a fresh account's roster is not empty"

    run(scenario)


def test_b_subscription(target, endpoints, accounts, transport):
    (ja, pa), (jb, pb) = accounts.new("alice"), accounts.new("bob")

    async def scenario(users):
        a = make_user(users, endpoints, transport, "alice", ja, pa)
        b = make_user(users, endpoints, transport, "bob", jb, pb)
        await online(a, b)
        await subscribe_both_ways(a, b)
        ra, rb = await a.roster_get(), await b.roster_get()
        assert ra.get(jb, {}).get("subscription") == "both", f"alice's roster: {ra}"
        assert rb.get(ja, {}).get("subscription") == "both", f"bob's roster: {rb}"
        assert ra[jb]["name"] == "Bee", f"alice's roster lost the item name: {ra}"
        assert not ra[jb]["ask"] and not rb[ja]["ask"], f"pending ask left: {ra} / {rb}"

    run(scenario)


def test_c_presence(target, endpoints, accounts, transport):
    (ja, pa), (jb, pb) = accounts.new("alice"), accounts.new("bob")

    async def scenario(users):
        a = make_user(users, endpoints, transport, "alice", ja, pa)
        b = make_user(users, endpoints, transport, "bob", jb, pb)
        await online(a, b)
        await subscribe_both_ways(a, b)
        # RFC 6121 3.1.5/3.1.6: approval sends the contact's current presence
        await a.inbox.wait_for("presence", is_available_from(str(b.full_jid)),
                               f"available presence from {b.full_jid} after approval")
        await b.inbox.wait_for("presence", is_available_from(str(a.full_jid)),
                               f"available presence from {a.full_jid} after approval")
        # A logs out: B sees it go; A logs in again: probe (A learns B) and broadcast (B learns A)
        old_a = str(a.full_jid)
        await a.disconnect()
        await b.inbox.wait_for("presence", is_presence("unavailable", old_a, bare=False),
                               f"unavailable presence from {old_a}")
        a2 = make_user(users, endpoints, transport, "alice-again", ja, pa)
        await online(a2)
        await a2.inbox.wait_for("presence", is_available_from(str(b.full_jid)),
                                f"available presence from {b.full_jid} after login (probe)")
        await b.inbox.wait_for("presence", is_available_from(str(a2.full_jid)),
                               f"available presence from {a2.full_jid} after its login")

    run(scenario)


def test_d_chat(target, endpoints, accounts, transport):
    (ja, pa), (jb, pb) = accounts.new("alice"), accounts.new("bob")
    body1 = f"hello bob <&> 'quotes' \"dq\" ünïcødé ✓ {secrets.token_hex(4)}"
    body2 = f"hi alice, back at you {secrets.token_hex(4)}"

    async def scenario(users):
        a = make_user(users, endpoints, transport, "alice", ja, pa)
        b = make_user(users, endpoints, transport, "bob", jb, pb)
        await online(a, b)
        a.send_chat(jb, body1)  # to the bare JID: routed to bob's available resource
        m = await b.inbox.wait_for("message", lambda m: m["body"] == body1,
                                   f"chat message from {a.full_jid} with body {body1!r}")
        assert m["type"] == "chat", f"message type {m['type']!r}, expected 'chat'"
        assert m["from"] == a.full_jid, f"from={m['from']}, expected {a.full_jid}"
        b.send_chat(str(m["from"]), body2)  # reply to the full JID it came from
        m2 = await a.inbox.wait_for("message", lambda m: m["body"] == body2,
                                    f"chat message from {b.full_jid} with body {body2!r}")
        assert m2["type"] == "chat", f"message type {m2['type']!r}, expected 'chat'"
        assert m2["from"] == b.full_jid, f"from={m2['from']}, expected {b.full_jid}"

    run(scenario)


def test_e_offline_message(target, endpoints, accounts, transport):
    (ja, pa), (jb, pb) = accounts.new("alice"), accounts.new("bob")
    body = f"while you were away {secrets.token_hex(4)}"

    async def scenario(users):
        a = make_user(users, endpoints, transport, "alice", ja, pa)
        b = make_user(users, endpoints, transport, "bob", jb, pb)
        await online(a, b)
        await b.disconnect()
        await asyncio.sleep(0.3)  # let the server finish tearing bob's session down
        a.send_chat(jb, body)
        await asyncio.sleep(0.5)  # stored before bob comes back
        b2 = make_user(users, endpoints, transport, "bob-again", jb, pb)
        await online(b2)
        m = await b2.inbox.wait_for("message", lambda m: m["body"] == body,
                                    f"offline message with body {body!r}")
        delay = m.xml.find(f"{{{NS_DELAY}}}delay")
        assert delay is not None, f"offline message without <delay xmlns='{NS_DELAY}'/>: {m}"
        assert delay.get("stamp"), f"<delay/> without stamp: {m}"
        assert m["from"] == a.full_jid, f"from={m['from']}, expected {a.full_jid}"
        assert m["type"] == "chat", f"message type {m['type']!r}, expected 'chat'"

    run(scenario)
