"""Interop scenarios with xmpp.js (@xmpp/client, npm) over WebSocket (RFC 7395), STARTTLS and
Direct TLS. The scenarios themselves live in js/scenario.mjs; each test runs one of them in a
Node process and reports its verdict. Same scenarios as test_slixmpp.py (see its docstring).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"
SCENARIO = JS_DIR / "scenario.mjs"
TRANSPORTS = ["websocket", "starttls", "directtls"]
SCENARIO_TIMEOUT_S = 30
PROCESS_TIMEOUT_S = SCENARIO_TIMEOUT_S + 15


def node_command() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found on PATH (Node.js >= 20.10 is needed for @xmpp/client)",
                    pytrace=False)
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    m = re.match(r"v(\d+)\.", version)
    major = int(m.group(1)) if m else 0
    # Node 20/21 have WebSocket only behind a flag; @xmpp/websocket uses the global one.
    return [node, "--experimental-websocket"] if major < 22 else [node]


@pytest.fixture(scope="session")
def node():
    if not (JS_DIR / "node_modules" / "@xmpp" / "client").is_dir():
        pytest.fail(f"{JS_DIR}/node_modules is missing: run `npm ci` there (or .ci/setup.sh)",
                    pytrace=False)
    return node_command()


@pytest.fixture(params=TRANSPORTS)
def transport(request, target):
    reason = target.unsupported.get(request.param)
    if reason:
        pytest.skip(f"{target.name}: {reason}")
    return request.param


def run_js(node, endpoints, transport, scenario, users):
    cfg = {
        "scenario": scenario,
        "service": endpoints.service_url(transport),
        "domain": endpoints.domain,
        "users": {label: {"jid": jid, "password": pw} for label, (jid, pw) in users.items()},
        "scenarioTimeoutMs": SCENARIO_TIMEOUT_S * 1000,
    }
    env = dict(os.environ)
    env["NODE_TLS_REJECT_UNAUTHORIZED"] = "0"  # self-signed certificates on the servers under test
    env["NODE_NO_WARNINGS"] = "1"
    try:
        p = subprocess.run([*node, str(SCENARIO), json.dumps(cfg)], cwd=JS_DIR, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=PROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        print((e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes)
              else (e.stderr or ""))
        pytest.fail(f"xmpp.js {scenario} over {transport}: node did not exit within "
                    f"{PROCESS_TIMEOUT_S} s", pytrace=False)
    # the XML trace: shown by pytest when the test fails
    print(p.stderr)
    result = None
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    if result is None:
        pytest.fail(f"xmpp.js {scenario} over {transport}: no RESULT line (exit {p.returncode})\n"
                    f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}", pytrace=False)
    if not result["ok"] or p.returncode != 0:
        pytest.fail(f"xmpp.js {scenario} over {transport}: {result.get('error')}", pytrace=False)
    return result.get("details", {})


def test_a_login(target, endpoints, accounts, transport, node):
    details = run_js(node, endpoints, transport, "login", {"alice": accounts.new("alice")})
    print(f"xmpp.js/{transport}: logged in as {details.get('jid')} with {details.get('mechanism')}")


def test_b_subscription(target, endpoints, accounts, transport, node):
    run_js(node, endpoints, transport, "subscription",
           {"alice": accounts.new("alice"), "bob": accounts.new("bob")})


def test_c_presence(target, endpoints, accounts, transport, node):
    run_js(node, endpoints, transport, "presence",
           {"alice": accounts.new("alice"), "bob": accounts.new("bob")})


def test_d_chat(target, endpoints, accounts, transport, node):
    run_js(node, endpoints, transport, "chat",
           {"alice": accounts.new("alice"), "bob": accounts.new("bob")})


def test_e_offline_message(target, endpoints, accounts, transport, node):
    run_js(node, endpoints, transport, "offline",
           {"alice": accounts.new("alice"), "bob": accounts.new("bob")})
