"""The admin CLI contract the interop harness relies on (`starling ctl`), checked end to end:
a registered account can log in with a real client. Starling only (reference servers have
their own tools)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from harness.slix import ScenarioFailure, SlixUser


@pytest.fixture
def starling(target):
    if target.name != "starling":
        pytest.skip(f"{target.name}: `starling ctl` checks apply to Starling only")
    return target


def login(endpoints, jid, password):
    async def main():
        u = SlixUser("cli-user", jid, password, endpoints.address("starttls"), "starttls",
                     f"slix-cli-{secrets.token_hex(3)}")
        try:
            await asyncio.wait_for(u.connect(), 20)
        finally:
            await u.disconnect()

    try:
        asyncio.run(main())
    except ScenarioFailure as e:
        pytest.fail(str(e), pytrace=False)


def test_register_identified_duplicate(starling, endpoints):
    user, pw = f"cli-dup-{secrets.token_hex(4)}", "pw-" + secrets.token_hex(8)
    starling.register(user, pw)
    r = starling.ctl("register_identified", user, starling.domain, "other-password")
    assert r.returncode != 0, f"registering {user} twice exited 0; stdout: {r.stdout!r}"
    expected = f"User {user}@{starling.domain} already registered"
    assert expected in r.stdout + r.stderr, \
        f"expected {expected!r}; stdout: {r.stdout!r} stderr: {r.stderr!r}"
    # the first password still works
    login(endpoints, f"{user}@{starling.domain}", pw)


def test_register_random_then_login(starling, endpoints):
    pw = "pw-" + secrets.token_hex(8)
    user = starling.register_random(pw)
    login(endpoints, f"{user}@{starling.domain}", pw)
