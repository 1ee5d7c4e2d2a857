"""A desktop client used as a person uses it: Profanity (Debian's `profanity`, a terminal client on
libstrophe) runs in tmux; the test types its commands (send-keys) and reads its screen
(capture-pane). The other side is bob, a slixmpp session (harness/slix.py). STARTTLS on the c2s
port; Profanity is told `tls trust` (accept the self-signed certificate).

f profanity   alice (Profanity) logs in with a password typed at its prompt; bob asks to
              subscribe, alice types `/sub allow` and `/sub request`, bob approves: bob's roster
              shows alice with 'both' and bob gets alice's presence, Profanity shows bob online
              and `/roster` lists him with 'both'; `/msg` reaches bob with exactly the typed
              body from alice's full JID and bob's reply shows in the chat window; alice
              `/quit`s, bob writes, alice starts Profanity again (same profile) and logs in:
              the message shows in bob's chat window, stamped with the time it was sent
              (XEP-0203 delay), not the time it arrived.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness.slix import (ScenarioFailure, SlixUser, is_available_from, is_presence,
                          roster_push_with)
from harness.targets import tail
from harness.tui import Terminal, missing_tools

# The whole scenario; each wait for the screen is 15 s (harness/tui.py), for a stanza 10 s
# (harness/slix.py).
SCENARIO_TIMEOUT = 120.0
WIDTH, HEIGHT = 200, 50

# What Profanity shows when a login goes wrong (fails the wait for "logged in" at once)
LOGIN_ERROR = re.compile(r"Login failed\.?|Connection failed.*|Could not connect.*"
                         r"|Disconnected\.?|Lost connection\.?")


@pytest.fixture
def tools():
    missing = missing_tools("profanity", "tmux")
    if missing:
        why = (f"{' and '.join(missing)} not installed (Debian packages `profanity`, `tmux`; "
               ".ci/setup.sh installs them)")
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI: {why}", pytrace=False)
        pytest.skip(why)


def versions() -> str:
    out = []
    for argv in (["profanity", "--version"], ["tmux", "-V"]):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                               stdin=subprocess.DEVNULL)
            out.append((r.stdout or r.stderr).strip().splitlines()[0])
        except Exception as e:  # only informative
            out.append(f"{argv[0]}: {e!r}")
    return ", ".join(out)


class Profanity:
    """Profanity in its own tmux server, with its own HOME: a fresh profile, kept across
    restarts."""

    def __init__(self, target, jid: str, password: str) -> None:
        self.target = target
        self.jid = jid
        self.password = password
        self.home = Path(tempfile.mkdtemp(prefix="starling-interop-profanity-"))
        self.term = Terminal("profanity", WIDTH, HEIGHT, describe_failure=self.failure_details)
        self.full_jid: str | None = None
        self.login_time: str | None = None  # "HH:MM:SS" of the last "logged in successfully"

    def env(self) -> dict[str, str]:
        h = self.home
        return {"HOME": str(h), "TERM": "xterm", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                "XDG_CONFIG_HOME": str(h / ".config"), "XDG_DATA_HOME": str(h / ".local/share"),
                "XDG_CACHE_HOME": str(h / ".cache")}

    def start(self) -> None:
        """Start (or, after /quit, start again) Profanity with the same profile."""
        if self.term.started:
            self.term.restart(["profanity"], self.env(), cwd=str(self.home))
        else:
            self.term.start(["profanity"], self.env(), cwd=str(self.home))

    async def connect(self) -> str:
        """/connect over STARTTLS to the target's c2s port, password at the prompt."""
        ep = self.target.endpoints
        # the window is up once the title bar says we are offline (first-run notices ignored)
        await self.term.wait_for("[offline]", "Profanity's window")
        self.term.type(f"/connect {self.jid} server {ep.host} port {ep.c2s_port} tls trust")
        await self.term.wait_for("Enter password:", "the password prompt", fail_on=LOGIN_ERROR)
        self.term.type(self.password)
        m = await self.term.wait_for(
            re.compile(r"^(\d\d:\d\d:\d\d) - " + re.escape(self.jid)
                       + r"/(\S+) logged in successfully", re.M),
            f"'{self.jid}/... logged in successfully'", fail_on=LOGIN_ERROR)
        self.login_time = m.group(1)
        self.full_jid = f"{self.jid}/{m.group(2)}"
        return self.full_jid

    async def quit(self) -> None:
        self.term.type("/quit")
        await self.term.wait_exit("/quit")

    def failure_details(self) -> str:
        log = self.home / ".local/share/profanity/logs/profanity.log"
        return (f"---- profanity.log (last lines; profile {self.home}) ----\n{tail(log, 25)}\n"
                f"---- {self.target.name} log (last lines) ----\n{self.target.log_tail(30)}")

    def close(self, keep: bool) -> None:
        self.term.close()
        if keep:
            print(f"profanity profile kept: {self.home}")
        else:
            shutil.rmtree(self.home, ignore_errors=True)


def seconds_of_day(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


@pytest.mark.timeout(SCENARIO_TIMEOUT + 30)
def test_f_profanity(tools, target, endpoints, accounts):
    accounts.prefix = "pf"
    (ja, pa), (jb, pb) = accounts.new("alice"), accounts.new("bob")
    token = secrets.token_hex(4)
    body = f"hello from profanity {token}"
    reply = f"hi alice, bob here {token}"
    offline_body = f"while you were away {token}"
    print(f"{versions()}; alice={ja} (Profanity), bob={jb} (slixmpp)")

    prof = Profanity(target, ja, pa)
    term = prof.term
    bob = SlixUser("bob", jb, pb, endpoints.address("starttls"), "starttls",
                   f"slix-bob-{secrets.token_hex(3)}")

    async def scenario():
        # bob: what every client does first (roster get, initial presence)
        await bob.connect()
        await bob.roster_get()
        bob.send_presence()

        # 2. alice logs in with Profanity
        prof.start()
        alice_full = await prof.connect()
        print(f"profanity logged in as {alice_full} at {prof.login_time}")

        # 3. subscription both ways, started by bob, answered by typing /sub commands
        bob.send_presence(to=ja, ptype="subscribe")
        await term.wait_for(f"Received authorization request from {jb}",
                            "bob's subscription request")
        term.type(f"/sub allow {jb}")
        await bob.inbox.wait_for("presence", is_presence("subscribed", ja, bare=True),
                                 f"<presence type='subscribed'/> from {ja} (/sub allow)")
        term.type(f"/sub request {jb}")
        await bob.inbox.wait_for("presence", is_presence("subscribe", ja, bare=True),
                                 f"<presence type='subscribe'/> from {ja} (/sub request)")
        bob.send_presence(to=ja, ptype="subscribed")
        await bob.inbox.wait_for("roster_push", roster_push_with(ja, "both"),
                                 f"roster push with {ja} subscription='both'")
        roster = await bob.roster_get()
        item = roster.get(ja)
        if item is None or item["subscription"] != "both" or item["ask"]:
            raise ScenarioFailure(f"bob's roster after the subscription: {roster}; expected "
                                  f"{ja} with subscription 'both' and no pending ask")
        await bob.inbox.wait_for("presence", is_available_from(alice_full),
                                 f"available presence from {alice_full}")
        await term.wait_for(f"++ {jb} ({bob.resource}) is online", "bob's presence (online)")
        term.type("/roster")
        await term.wait_for(re.compile(r"^\d\d:\d\d:\d\d -\s+" + re.escape(jb) + r" - both\b",
                                       re.M), f"{jb} with subscription 'both' in /roster")

        # 4. chat both ways (/msg focuses bob's chat window, where the reply shows)
        term.type(f"/msg {jb} {body}")
        m = await bob.inbox.wait_for("message", lambda m: m["body"] == body,
                                     f"chat message with body {body!r}")
        if m["from"] != alice_full or m["type"] != "chat":
            raise ScenarioFailure(f"bob got {m}; expected type 'chat' from {alice_full}")
        bob.send_chat(str(m["from"]), reply)
        await term.wait_for(re.compile(re.escape(jb) + r"(/\S+)?: " + re.escape(reply)),
                            "bob's reply in the chat window")

        # 5. offline message: alice quits, bob writes, alice comes back
        await prof.quit()
        await bob.inbox.wait_for("presence", is_presence("unavailable", alice_full, bare=False),
                                 f"unavailable presence from {alice_full} after /quit")
        await asyncio.sleep(0.3)  # let the server finish tearing alice's session down
        bob.send_chat(ja, offline_body)
        sent = time.monotonic()
        await asyncio.sleep(0.5)  # stored before alice comes back
        prof.start()
        await term.wait_for("[offline]", "Profanity's window (second start)")
        # the delay stamp is checked against the login time shown: keep them 2+ s apart
        await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - sent)))
        alice_full2 = await prof.connect()
        print(f"profanity logged in again as {alice_full2} at {prof.login_time}")
        term.type(f"/msg {jb}")  # focus bob's chat window (opened by the incoming message)
        shown = await term.wait_for(
            re.compile(r"^(\d\d:\d\d:\d\d) - " + re.escape(jb) + r"(/\S+)?: "
                       + re.escape(offline_body), re.M),
            "the offline message in bob's chat window")
        stamp, login = seconds_of_day(shown.group(1)), seconds_of_day(prof.login_time)
        if not (0 < (login - stamp) % 86400 < 3600):
            raise term.fail(
                f"the offline message is shown at {shown.group(1)}, not before the login at "
                f"{prof.login_time}: its <delay/> stamp (XEP-0203) was missing or ignored")
        await prof.quit()

    async def main():
        try:
            await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT)
        except asyncio.TimeoutError:
            raise term.fail(f"scenario did not finish within {SCENARIO_TIMEOUT:.0f} s") \
                from None
        except ScenarioFailure as e:
            if term.label + " screen" in str(e):
                raise
            raise ScenarioFailure(f"{e}{term.report()}") from None  # bob's side failed
        finally:
            await bob.disconnect()

    error = "the scenario was interrupted"
    try:
        asyncio.run(main())
        error = None
    except ScenarioFailure as e:
        error = str(e)
    finally:
        prof.close(keep=error is not None or bool(os.environ.get("INTEROP_KEEP")))
    if error is not None:  # outside `except`: the report is printed once, without a chain
        pytest.fail(error, pytrace=False)
