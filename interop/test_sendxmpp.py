"""A command-line sender: sendxmpp (Debian's `sendxmpp`, Perl Net::XMPP / XML::Stream), the way
scripts and cron jobs use it: `echo TEXT | sendxmpp -u USER -p PASSWORD -j DOMAIN:PORT -t -n RCPT`.
It connects to the c2s port, does STARTTLS (-t; -n: the self-signed certificate is not
verified), authenticates with SASL PLAIN (the only mechanism Net::XMPP has), binds the resource
`sendxmpp` (or -r RES), sends one <message type='chat'/> whose body is all of stdin (trailing
newline included, plus an empty <subject/>), waits 1 s and closes the stream. It never sends
presence. The recipient bob is a slixmpp session (harness/slix.py).

g1 online     bob is online; sendxmpp (-r RES) sends a multi-line body with <&>, quotes and
              non-ASCII text to bob's bare JID: bob receives exactly that text (plus the one
              trailing newline sendxmpp keeps from stdin), type 'chat', from alice's full JID
              with resource RES
g2 offline    bob is offline (never logged in); sendxmpp sends (default resource): bob logs in
              and, on his initial presence, gets the message with a XEP-0203
              <delay xmlns='urn:xmpp:delay' stamp=.../> between the send and the login, from
              alice/sendxmpp
g3 password   a wrong password: sendxmpp exits non-zero, and bob (online) receives nothing

Each sendxmpp run has 20 s and its own empty HOME (sendxmpp would read ~/.sendxmpprc only
without -u/-p, but nothing of the user's should be near it); its stdout/stderr are shown when
a check fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from harness.slix import NS_DELAY, ScenarioFailure, SlixUser

SCENARIO_TIMEOUT = 45.0
SENDXMPP_TIMEOUT = 20.0
# After a refused sendxmpp run, how long bob keeps listening for a message that must not come
QUIET_PERIOD = 2.0


@pytest.fixture
def tools():
    if shutil.which("sendxmpp") is None:
        why = "sendxmpp not installed (Debian package `sendxmpp`; .ci/setup.sh installs it)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI: {why}", pytrace=False)
        pytest.skip(why)


@pytest.fixture
def home():
    """An empty HOME for sendxmpp: no ~/.sendxmpprc, no user config of any kind."""
    d = tempfile.mkdtemp(prefix="starling-interop-sendxmpp-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def version() -> str:
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "sendxmpp"], capture_output=True,
                           text=True, timeout=10, stdin=subprocess.DEVNULL)
        return f"sendxmpp {r.stdout.strip() or '(version unknown)'}"
    except Exception as e:  # only informative
        return f"sendxmpp: {e!r}"


@dataclass
class Run:
    argv: list[str]
    returncode: int | None  # None: killed after the timeout
    stdout: str
    stderr: str
    seconds: float

    def report(self) -> str:
        shown = " ".join("***" if prev == "-p" else a
                         for prev, a in zip([""] + self.argv, self.argv))
        rc = "killed after the timeout" if self.returncode is None else f"exit {self.returncode}"
        return (f"\n---- `{shown}` ({rc}, {self.seconds:.1f} s) ----\n"
                f"stdout:\n{self.stdout.rstrip() or '(empty)'}\n"
                f"stderr:\n{self.stderr.rstrip() or '(empty)'}\n---- end of sendxmpp output ----")


async def sendxmpp(endpoints, home: str, jid: str, password: str, to: str, text: str,
                   resource: str | None = None) -> Run:
    """`printf %s TEXT | sendxmpp ...` over STARTTLS to the target's c2s port, everything on the
    command line; 20 s at most (then killed)."""
    user, domain = jid.split("@", 1)
    # -j DOMAIN:PORT: Net::XMPP connects to that name and uses it as the stream's `to`, so it
    # must be the XMPP domain ('localhost', which resolves to the loopback address we listen on)
    argv = ["sendxmpp", "-u", user, "-p", password, "-j", f"{domain}:{endpoints.c2s_port}",
            "-t", "-n"]
    if resource is not None:
        argv += ["-r", resource]
    argv.append(to)
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=home)
    try:
        out, err = await asyncio.wait_for(proc.communicate(text.encode()), SENDXMPP_TIMEOUT)
        rc: int | None = proc.returncode
    except asyncio.TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        rc = None
    run = Run(argv, rc, out.decode(errors="replace"), err.decode(errors="replace"),
              time.monotonic() - start)
    print(f"sendxmpp: {'timeout' if rc is None else f'exit {rc}'} in {run.seconds:.1f} s")
    return run


def expect_success(run: Run) -> None:
    if run.returncode != 0:
        raise ScenarioFailure("sendxmpp did not succeed" + run.report())


def body_matches(text: str):
    # sendxmpp sends all of stdin as the body, the final newline included; a server must pass
    # it on unchanged. Accept the text with or without that one newline, nothing else.
    return lambda m: m["body"] in (text, text + "\n")


def parse_stamp(stamp: str) -> datetime:
    """XEP-0082 DateTime, e.g. 2024-01-02T03:04:05Z or ...05.123456+00:00."""
    dt = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("no time zone")
    return dt


def run_scenario(coro_fn, users: list[SlixUser], runs: list[Run]) -> None:
    """Run one scenario with its overall deadline; always disconnect bob. Every failure shows
    the output of the sendxmpp runs so far."""

    async def main():
        try:
            await asyncio.wait_for(coro_fn(), SCENARIO_TIMEOUT)
        except asyncio.TimeoutError:
            raise ScenarioFailure(f"scenario did not finish within {SCENARIO_TIMEOUT:.0f} s") \
                from None
        finally:
            for u in users:
                await u.disconnect()

    error = None
    try:
        asyncio.run(main())
    except ScenarioFailure as e:
        error = str(e)
        for r in runs:
            if r.report() not in error:
                error += r.report()
    if error is not None:  # outside `except`: the report is printed once, without a chain
        pytest.fail(error, pytrace=False)


def make_bob(endpoints, jb: str, pb: str) -> SlixUser:
    return SlixUser("bob", jb, pb, endpoints.address("starttls"), "starttls",
                    f"slix-bob-{secrets.token_hex(3)}")


async def online(u: SlixUser) -> None:
    """Log in, get the roster, send initial presence (what every real client does first)."""
    await u.connect()
    await u.roster_get()
    u.send_presence()


@pytest.mark.timeout(SCENARIO_TIMEOUT + 30)
def test_g1_sendxmpp_online(tools, home, target, endpoints, accounts):
    accounts.prefix = "sd"
    (ja, pa), (jb, pb) = accounts.new("alice"), accounts.new("bob")
    token = secrets.token_hex(4)
    resource = f"sendxmpp-{token}"
    text = (f"hello from sendxmpp {token}\n"
            "second line: <&> \"double\" 'single' \u00e9t\u00e9 \u65e5\u672c \U0001F426")
    print(f"{version()}; alice={ja} (sendxmpp), bob={jb} (slixmpp)")
    bob = make_bob(endpoints, jb, pb)
    runs: list[Run] = []

    async def scenario():
        await online(bob)
        # like `echo TEXT | sendxmpp ...`: stdin ends with a newline, which sendxmpp keeps
        run = await sendxmpp(endpoints, home, ja, pa, jb, text + "\n", resource=resource)
        runs.append(run)
        expect_success(run)
        m = await bob.inbox.wait_for("message", lambda m: token in (m["body"] or ""),
                                     f"a message whose body contains {token!r}")
        if not body_matches(text)(m):
            raise ScenarioFailure(f"bob got the body {m['body']!r}; expected exactly {text!r} "
                                  f"(optionally followed by one newline)\n    {m}")
        expected_from = f"{ja}/{resource}"
        if m["from"].full != expected_from or m["type"] != "chat":
            raise ScenarioFailure(f"bob got {m}; expected type 'chat' from {expected_from}")
        if m.xml.find(f"{{{NS_DELAY}}}delay") is not None:
            raise ScenarioFailure(f"bob was online, yet the message carries a <delay/>: {m}")

    run_scenario(scenario, [bob], runs)


@pytest.mark.timeout(SCENARIO_TIMEOUT + 30)
def test_g2_sendxmpp_offline(tools, home, target, endpoints, accounts):
    accounts.prefix = "sd"
    (ja, pa), (jb, pb) = accounts.new("alice"), accounts.new("bob")
    token = secrets.token_hex(4)
    text = f"while you were away {token}"
    print(f"{version()}; alice={ja} (sendxmpp), bob={jb} (slixmpp, offline at first)")
    bob = make_bob(endpoints, jb, pb)
    runs: list[Run] = []

    async def scenario():
        before = datetime.now(timezone.utc)
        run = await sendxmpp(endpoints, home, ja, pa, jb, text + "\n")  # default resource
        runs.append(run)
        expect_success(run)
        # sendxmpp waited 1 s after sending before it closed; the stamp must predate the login
        await asyncio.sleep(0.5)
        login = datetime.now(timezone.utc)
        await online(bob)
        m = await bob.inbox.wait_for("message", lambda m: token in (m["body"] or ""),
                                     f"the offline message containing {token!r}")
        if not body_matches(text)(m):
            raise ScenarioFailure(f"bob got the body {m['body']!r}; expected {text!r} "
                                  f"(optionally followed by one newline)\n    {m}")
        expected_from = f"{ja}/sendxmpp"
        if m["from"].full != expected_from or m["type"] != "chat":
            raise ScenarioFailure(f"bob got {m}; expected type 'chat' from {expected_from} "
                                  "(sendxmpp's default resource)")
        delay = m.xml.find(f"{{{NS_DELAY}}}delay")
        if delay is None or not delay.get("stamp"):
            raise ScenarioFailure(
                f"the offline message has no <delay xmlns='{NS_DELAY}' stamp=.../>: {m}")
        try:
            stamp = parse_stamp(delay.get("stamp"))
        except ValueError as e:
            raise ScenarioFailure(f"unparsable <delay/> stamp {delay.get('stamp')!r} ({e}): {m}")
        # stamps may be truncated to whole seconds: allow 1 s before the send started
        lo, hi = before.timestamp() - 1.0, login.timestamp()
        if not lo <= stamp.timestamp() <= hi:
            raise ScenarioFailure(
                f"<delay/> stamp {delay.get('stamp')} is not between the send "
                f"({before.isoformat()}) and bob's login ({login.isoformat()}): {m}")
        print(f"delivered with <delay stamp='{delay.get('stamp')}'/>, bob logged in at "
              f"{login.isoformat()}")

    run_scenario(scenario, [bob], runs)


@pytest.mark.timeout(SCENARIO_TIMEOUT + 30)
def test_g3_sendxmpp_wrong_password(tools, home, target, endpoints, accounts):
    accounts.prefix = "sd"
    (ja, pa), (jb, pb) = accounts.new("alice"), accounts.new("bob")
    token = secrets.token_hex(4)
    text = f"this must not arrive {token}\n"
    print(f"{version()}; alice={ja} (sendxmpp, wrong password), bob={jb} (slixmpp)")
    bob = make_bob(endpoints, jb, pb)
    runs: list[Run] = []

    async def scenario():
        await online(bob)
        run = await sendxmpp(endpoints, home, ja, pa + "-wrong", jb, text)
        runs.append(run)
        if run.returncode is None:
            raise ScenarioFailure("sendxmpp with a wrong password neither failed nor finished "
                                  f"within {SENDXMPP_TIMEOUT:.0f} s")
        if run.returncode == 0:
            raise ScenarioFailure("sendxmpp with a wrong password exited 0 (the login was "
                                  "accepted?)" + run.report())
        await asyncio.sleep(QUIET_PERIOD)
        got = [st for kind, st in bob.inbox.items if kind == "message"]
        if got:
            raise ScenarioFailure("sendxmpp's login was refused, yet bob received:\n    "
                                  + "\n    ".join(str(st) for st in got))
        print(f"refused as expected: {run.stderr.strip().splitlines()[-1:]}")

    run_scenario(scenario, [bob], runs)
