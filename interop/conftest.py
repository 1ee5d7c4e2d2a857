"""Fixtures shared by the interop scenarios: the server under test and fresh accounts.

The server (Starling by default, or a reference server: see harness/targets.py) is started once
per pytest session; each test registers its own fresh, randomly named accounts.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.targets import TargetError, make_target  # noqa: E402

_target = None


@pytest.fixture(scope="session")
def target():
    global _target
    t = make_target()
    _target = t
    try:
        t.start()
    except TargetError as e:
        t.failed = True
        pytest.fail(f"{t.name}: could not start the server under test: {e}", pytrace=False)
    yield t
    t.stop()


@pytest.fixture
def endpoints(target):
    return target.endpoints


class Accounts:
    """Registers fresh accounts on the target: `new(label)` -> (bare_jid, password)."""

    def __init__(self, target, prefix: str) -> None:
        self.target = target
        self.prefix = prefix

    def new(self, label: str) -> tuple[str, str]:
        user = f"{self.prefix}-{label}-{secrets.token_hex(4)}".lower()
        password = "pw-" + secrets.token_urlsafe(12)
        try:
            self.target.register(user, password)
        except TargetError as e:
            pytest.fail(f"registering {user}: {e}", pytrace=False)
        return f"{user}@{self.target.endpoints.domain}", password


@pytest.fixture
def accounts(target, request):
    prefix = "sx" if "slixmpp" in request.node.nodeid else "js"
    return Accounts(target, prefix)


def pytest_runtest_makereport(item, call):
    # A skip is raised as an exception too; only real failures keep the server's files.
    if (
        call.excinfo is not None
        and not call.excinfo.errisinstance(pytest.skip.Exception)
        and _target is not None
    ):
        _target.failed = True


def pytest_report_header(config):
    t = os.environ.get("INTEROP_TARGET", "starling")
    extra = ""
    if t == "starling":
        from harness.targets import starling_bin
        extra = f" ({starling_bin()})"
    return f"interop target: {t}{extra}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stats = terminalreporter.stats
    passed = len([r for r in stats.get("passed", []) if r.when == "call"])
    failed = len({r.nodeid for key in ("failed", "error") for r in stats.get(key, [])})
    skipped = len(stats.get("skipped", []))
    if failed and _target is not None:
        log_tail = _target.log_tail(80)
        if log_tail:
            terminalreporter.section(f"{_target.name} log (last lines)")
            terminalreporter.write_line(log_tail)
    line = f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
    path = os.environ.get("INTEROP_SUMMARY_FILE")
    if path:  # interop/run.sh prints it last, after pytest's own closing line
        Path(path).write_text(line + "\n")
    else:
        terminalreporter.write_line(line)
