"""Drive a terminal program as a person would: tmux runs it, `send-keys` types, `capture-pane`
reads the screen.

Each `Terminal` has its own tmux server (`tmux -L <unique socket name>`, no user config), so
nothing else on the machine is touched, and `close()` kills exactly that server. The program's
pane stays after the program exits (remain-on-exit), so a crash leaves its last screen to show.
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
from typing import Callable

from harness.slix import ScenarioFailure

POLL_INTERVAL = 0.2  # seconds between two screen captures
STEP_TIMEOUT = 15.0  # seconds for anything expected to show up on the screen
SCROLLBACK = 300  # lines of history included in a capture (capture-pane -S -N)


def missing_tools(*names: str) -> list[str]:
    """The programs among `names` that are not on PATH."""
    return [n for n in names if shutil.which(n) is None]


class Terminal:
    """One detached tmux session running one program in a fixed-size window."""

    def __init__(self, label: str, width: int = 200, height: int = 50,
                 describe_failure: Callable[[], str] | None = None) -> None:
        self.label = label
        self.width = width
        self.height = height
        self.socket = f"starling-interop-{label}-{secrets.token_hex(4)}"
        self.session = "main-1"
        # extra text (server log tail, program log, ...) appended to every failure report
        self.describe_failure = describe_failure
        self._conf_dir = Path(tempfile.mkdtemp(prefix="starling-interop-tmux-"))
        self._conf = self._conf_dir / "tmux.conf"
        self._conf.write_text(
            "set -g remain-on-exit on\n"       # keep a dead program's last screen
            f"set -g history-limit {SCROLLBACK * 10}\n"
            "set -g status off\n"              # the program gets the whole window
            "set -g escape-time 0\n")
        self.started = False
        self._socket_path: Path | None = None

    # ---- tmux plumbing -----------------------------------------------------------------------

    def _tmux_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("TMUX", None)  # we may be running inside someone's tmux: never talk to it
        env.pop("TMUX_PANE", None)
        return env

    def tmux(self, *args: str, check: bool = True,
             timeout: float = 10) -> subprocess.CompletedProcess:
        # -u: UTF-8 whatever the locale; -f: our config only (read when the server starts)
        r = subprocess.run(["tmux", "-u", "-L", self.socket, "-f", str(self._conf), *args],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, env=self._tmux_env())
        if check and r.returncode != 0:
            raise ScenarioFailure(f"{self.label}: `tmux {' '.join(args)}` exited {r.returncode}: "
                                  f"{r.stderr.strip()}{self.report()}")
        return r

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              cwd: str | None = None) -> None:
        """Start `argv` in a new detached session (a new tmux server if none runs yet).

        `env` is the program's whole environment (`env -i`, so neither ours nor tmux's own
        defaults such as TERM leak in); PATH is added when missing.
        """
        env = dict(env or {})
        env.setdefault("PATH", os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
        cmd = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
        args = ["new-session", "-d", "-s", self.session, "-x", str(self.width),
                "-y", str(self.height)]
        if cwd:
            args += ["-c", cwd]
        self.tmux(*args, "--", *cmd)
        self.started = True
        r = self.tmux("display-message", "-p", "-t", self.session, "#{socket_path}", check=False)
        if r.returncode == 0 and r.stdout.strip():
            self._socket_path = Path(r.stdout.strip())

    async def wait_exit(self, what: str, timeout: float = STEP_TIMEOUT) -> None:
        """Wait until the program has exited (its pane is dead)."""
        deadline = time.monotonic() + timeout
        while not self.pane_dead():
            if time.monotonic() >= deadline:
                raise self.fail(f"{what}: the program did not exit within {timeout:.0f} s")
            await asyncio.sleep(POLL_INTERVAL)

    def pane_dead(self) -> bool:
        r = self.tmux("display-message", "-p", "-t", self.session, "#{pane_dead}", check=False)
        return r.returncode != 0 or r.stdout.strip() == "1"

    def restart(self, argv: list[str], env: dict[str, str] | None = None,
                cwd: str | None = None) -> None:
        """Start `argv` in a fresh session (a clean screen), then end the old one (its program
        should have exited). In that order, so the tmux server never runs out of sessions and
        exits under our feet."""
        old = self.session
        n = int(old.rsplit("-", 1)[1]) + 1
        self.session = f"main-{n}"
        self.start(argv, env, cwd)
        self.tmux("kill-session", "-t", old, check=False)

    def type(self, text: str, enter: bool = True) -> None:
        """Type `text` literally (no key-name lookup), then Enter."""
        self.tmux("send-keys", "-t", self.session, "-l", "--", text)
        if enter:
            self.tmux("send-keys", "-t", self.session, "Enter")

    def screen(self, scrollback: int = SCROLLBACK) -> str:
        """The visible screen plus up to `scrollback` lines of history, trailing blanks cut."""
        r = self.tmux("capture-pane", "-p", "-J", "-t", self.session, "-S", f"-{scrollback}",
                      check=False)
        if r.returncode != 0:
            return f"(capture-pane failed: {r.stderr.strip()})"
        return "\n".join(line.rstrip() for line in r.stdout.rstrip("\n").splitlines())

    # ---- waiting -----------------------------------------------------------------------------

    async def wait_for(self, pattern: str | re.Pattern, what: str,
                       timeout: float = STEP_TIMEOUT, count: int = 1,
                       fail_on: re.Pattern | None = None) -> re.Match:
        """Poll the screen until `pattern` (a regex, or a plain string matched literally) shows
        up `count` times; return the last match. Fails with the whole screen after `timeout`,
        or at once if `fail_on` shows up first (e.g. a login error)."""
        rx = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            found = list(rx.finditer(text))
            if len(found) >= count:
                return found[count - 1]
            bad = fail_on.search(text) if fail_on is not None else None
            if bad:
                raise ScenarioFailure(
                    f"{self.label}: waiting for {what}, the screen shows {bad.group(0)!r}"
                    + self.report(text))
            if time.monotonic() >= deadline:
                dead = " (the program has exited)" if self.pane_dead() else ""
                raise ScenarioFailure(
                    f"{self.label}: {what} did not show on the screen within {timeout:.0f} s"
                    f"{dead}; looked for /{rx.pattern}/"
                    + (f" x{count}, seen {len(found)}" if count > 1 else "")
                    + self.report(text))
            await asyncio.sleep(POLL_INTERVAL)

    def fail(self, message: str) -> ScenarioFailure:
        """A failure carrying the current screen and the extra report."""
        return ScenarioFailure(f"{self.label}: {message}{self.report()}")

    def report(self, text: str | None = None) -> str:
        """The screen (captured now unless given) and the extra details, for a failure."""
        if text is None:
            text = self.screen() if self.started else "(not started)"
        out = (f"\n---- {self.label} screen ({self.width}x{self.height}, tmux -L {self.socket}, "
               f"with scrollback) ----\n{text}\n---- end of screen ----")
        if self.describe_failure is not None:
            try:
                out += "\n" + self.describe_failure()
            except Exception as e:  # the report must never hide the real failure
                out += f"\n(could not add the failure details: {e!r})"
        return out

    # ---- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Kill this terminal's own tmux server (and so its program), nothing else."""
        try:
            self.tmux("kill-server", check=False, timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self._socket_path is not None:  # tmux leaves its socket file behind
            self._socket_path.unlink(missing_ok=True)
        shutil.rmtree(self._conf_dir, ignore_errors=True)
