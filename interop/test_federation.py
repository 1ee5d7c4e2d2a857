"""Federation interop (RFC 6120 §5-§6 server-to-server streams, XEP-0220 dialback, SASL
EXTERNAL with CA-signed certificates, RFC 6121 subscriptions, presence and chat across
domains): Starling (rs.test) federates with ejabberd (ej.test) and Prosody (pr.test) from
Debian, started by shared/refservers/fedservers.sh on their own loopback addresses.

For each mode (certs: only certificate authentication; dialback: untrusted certificates,
authentication by dialback), each peer, and each side going first:
  x subscribes to y, y approves; y subscribes to x, x approves (both directions of stream
  establishment: Starling dials out and the peer dials in); each sees the other's available
  presence from its full JID; chat x -> y (bare JID) and y -> x (full JID), exact bodies;
  then `starling ctl s2s_connections` lists the peer with the mode's authentication method.
Starling is restarted for every scenario, so each one sets up its s2s streams afresh.

Needs ejabberd, Prosody, openssl and root (fedservers.sh runs the servers as their own users).
Without them the module is skipped, except in CI (CI=true) where that is a failure.
`FED_HOME=prosody` runs the same scenarios with Prosody in Starling's place, against ejabberd:
that checks the harness itself, never Starling.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets

import pytest

from harness.fed import (EJABBERD, PROSODY, STARLING, FedServers, Server, StarlingFed,
                         in_ci, missing_prerequisites, prosody_bidi)
from harness.slix import ScenarioFailure, SlixUser, is_available_from, is_presence
from harness.targets import TargetError, tail

MODES = ["certs", "dialback"]
SCENARIO_TIMEOUT = 45.0
# How each mode's server-to-server streams must be authenticated, as `ctl s2s_connections`
# names it.
AUTH_METHOD = {"certs": re.compile(r"sasl[-_ ]?external", re.I),
               "dialback": re.compile(r"dialback", re.I)}

HOME_NAME = os.environ.get("FED_HOME", "starling").strip().lower()
if HOME_NAME not in ("starling", "prosody"):
    raise pytest.UsageError(f"FED_HOME={HOME_NAME!r}: starling or prosody")
HOME = STARLING if HOME_NAME == "starling" else PROSODY
PEERS = [EJABBERD, PROSODY] if HOME_NAME == "starling" else [EJABBERD]


@pytest.fixture(scope="module", autouse=True)
def prerequisites():
    if os.environ.get("INTEROP_TARGET", "starling").strip().lower() != "starling":
        pytest.skip("federation scenarios run with INTEROP_TARGET=starling only")
    missing = missing_prerequisites()
    if missing:
        why = "federation interop needs " + ", ".join(missing) + \
              " (.ci/setup.sh installs the packages)"
        if in_ci():
            pytest.fail(f"CI: {why}", pytrace=False)
        pytest.skip(why)


class Fed:
    """The servers of one mode: the reference pair, and Starling unless it is the self-test."""

    def __init__(self, mode: str, servers: FedServers, starling: StarlingFed | None) -> None:
        self.mode = mode
        self.servers = servers
        self.starling = starling

    def register(self, server: Server, user: str, password: str) -> None:
        if server.name == "starling":
            assert self.starling is not None
            self.starling.register(user, password)
        else:
            self.servers.register(server.name, user, server.domain, password)

    def logs(self) -> str:
        parts = []
        for s in PEERS + ([HOME] if HOME.name != "starling" else []):
            parts.append(f"--- {s.name} log (last lines) ---\n{self.servers.log_tail(s.name)}")
        if self.starling is not None:
            if self.starling.proc is not None and self.starling.proc.poll() is None:
                r = self.starling.ctl("s2s_connections")
                parts.append(f"--- starling ctl s2s_connections (exit {r.returncode}) ---\n"
                             f"{r.stdout}{r.stderr}")
            parts.append(f"--- starling log {self.starling.log} (last lines) ---\n"
                         f"{tail(self.starling.log, 60)}")
        return "\n".join(parts)


@pytest.fixture(scope="module", params=MODES)
def fed(request):
    mode = request.param
    peers = f"{STARLING.domain}={STARLING.s2s[0]}:{STARLING.s2s[1]}"
    servers = FedServers(peers)
    starling = None
    try:
        servers.restart(mode)
        if HOME.name == "starling":
            cert, key = servers.cert(STARLING.domain)
            starling = StarlingFed(mode, cert, key)
    except TargetError as e:
        error = str(e)
    else:
        error = None
    if error is not None:
        servers.stop()
        pytest.fail(f"federation servers ({mode}) did not start: {error}", pytrace=False)
    f = Fed(mode, servers, starling)
    yield f
    if starling is not None:
        starling.cleanup()
    if not os.environ.get("INTEROP_KEEP"):
        servers.stop()


def new_account(fed: Fed, server: Server, label: str) -> tuple[str, str]:
    user = f"fed-{label}-{secrets.token_hex(4)}"
    password = "pw-" + secrets.token_urlsafe(12)
    try:
        fed.register(server, user, password)
        error = None
    except TargetError as e:
        error = str(e)
    if error is not None:
        pytest.fail(f"registering {user}@{server.domain}: {error}", pytrace=False)
    return f"{user}@{server.domain}", password


async def online(*users: SlixUser) -> None:
    """Log in, get the roster, send initial presence (what every real client does)."""
    await asyncio.gather(*(u.connect() for u in users))
    for u in users:
        await u.roster_get()
        u.send_presence()


async def subscribe(x: SlixUser, y: SlixUser) -> None:
    """x asks for y's presence; y approves (RFC 6121 §3.1)."""
    xb, yb = str(x.jid.bare), str(y.jid.bare)
    x.send_presence(to=yb, ptype="subscribe")
    await y.inbox.wait_for("presence", is_presence("subscribe", xb, bare=True),
                           f"<presence type='subscribe'/> from {xb}")
    y.send_presence(to=xb, ptype="subscribed")
    await x.inbox.wait_for("presence", is_presence("subscribed", yb, bare=True),
                           f"<presence type='subscribed'/> from {yb}")


async def chat(x: SlixUser, y: SlixUser) -> None:
    body1 = f"over the wire <&> 'q' ünïcødé {secrets.token_hex(4)}"
    body2 = f"and back {secrets.token_hex(4)}"
    x.send_chat(str(y.jid.bare), body1)
    m = await y.inbox.wait_for("message", lambda m: m["body"] == body1,
                               f"chat from {x.full_jid} with body {body1!r}")
    if m["from"] != x.full_jid or m["type"] != "chat":
        raise ScenarioFailure(f"{y.label}: got from={m['from']} type={m['type']}, expected "
                              f"from={x.full_jid} type=chat")
    y.send_chat(str(m["from"]), body2)
    m2 = await x.inbox.wait_for("message", lambda m: m["body"] == body2,
                                f"chat from {y.full_jid} with body {body2!r}")
    if m2["from"] != y.full_jid or m2["type"] != "chat":
        raise ScenarioFailure(f"{x.label}: got from={m2['from']} type={m2['type']}, expected "
                              f"from={y.full_jid} type=chat")


def check_s2s_connections(fed: Fed, peer: Server) -> None:
    assert fed.starling is not None
    r = fed.starling.ctl("s2s_connections")
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"`starling ctl s2s_connections` exited {r.returncode}:\n{out}"
    lines = [line for line in out.splitlines() if peer.domain in line]
    assert lines, f"`starling ctl s2s_connections` does not list {peer.domain}:\n{out}"
    wrong = [line for line in lines if not AUTH_METHOD[fed.mode].search(line)]
    assert not wrong, (f"{peer.domain} streams not authenticated by "
                       f"{AUTH_METHOD[fed.mode].pattern} in {fed.mode} mode:\n{out}")
    if peer is PROSODY and prosody_bidi():
        # Prosody with mod_s2s_bidi: one stream carries both directions (XEP-0288).
        assert any(re.search(r"\bbidi\b", line) for line in lines), \
            f"FED_PROSODY_BIDI: no bidi stream with {peer.domain}:\n{out}"


@pytest.mark.parametrize("first", ["home", "peer"])
@pytest.mark.parametrize("peer", PEERS, ids=lambda s: s.name)
def test_federation(fed, peer, first):
    if fed.starling is not None:
        error = None
        try:
            fed.starling.start()
        except TargetError as e:
            error = str(e)
        if error is not None:
            pytest.fail(error, pytrace=False)
    try:
        ja, pa = new_account(fed, HOME, "alice")
        jb, pb = new_account(fed, peer, "bob")
        users: list[SlixUser] = []

        async def scenario():
            a = SlixUser("alice", ja, pa, HOME.c2s, "starttls", f"a-{secrets.token_hex(3)}")
            b = SlixUser("bob", jb, pb, peer.c2s, "starttls", f"b-{secrets.token_hex(3)}")
            users.extend([a, b])
            await online(a, b)
            x, y = (a, b) if first == "home" else (b, a)
            await subscribe(x, y)
            await subscribe(y, x)
            # RFC 6121 §3.1.5: approving sends the contact the user's current presence
            await x.inbox.wait_for("presence", is_available_from(str(y.full_jid)),
                                   f"available presence from {y.full_jid}")
            await y.inbox.wait_for("presence", is_available_from(str(x.full_jid)),
                                   f"available presence from {x.full_jid}")
            await chat(x, y)

        async def main():
            try:
                await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT)
            except asyncio.TimeoutError:
                raise ScenarioFailure(
                    f"scenario did not finish within {SCENARIO_TIMEOUT:.0f} s") from None
            finally:
                for u in users:
                    await u.disconnect()

        failure = None
        try:
            asyncio.run(main())
        except ScenarioFailure as e:
            failure = str(e)
        if failure is not None:
            pytest.fail(f"{HOME.domain} <-> {peer.domain} ({fed.mode}, {first} first): "
                        f"{failure}\n{fed.logs()}", pytrace=False)
        if fed.starling is not None:
            check_s2s_connections(fed, peer)
    except BaseException:
        if fed.starling is not None:
            fed.starling.failed = True
        raise
    finally:
        if fed.starling is not None:
            fed.starling.stop()
