"""Servers the interop scenarios run against.

`INTEROP_TARGET` picks one:
  starling (default)  start the Starling binary ($STARLING_BIN) in a temp dir with a config written
                      below, on free loopback ports, and register accounts with `starling ctl`;
  prosody / ejabberd  use a reference server from shared/refservers/servers.sh (started if it is
                      not running, stopped again at the end if we started it).

Everything a scenario needs from a target is `Endpoints` plus `register(user, password)`.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Endpoints:
    domain: str  # the XMPP domain the accounts live on
    host: str  # IP address the clients connect to
    c2s_port: int  # RFC 6120 c2s with STARTTLS
    direct_tls_port: int | None  # XEP-0368 Direct TLS
    ws_url: str | None  # RFC 7395 WebSocket endpoint

    def address(self, transport: str) -> tuple[str, int] | str:
        """Where a client connects for `transport` (tcp pair for slixmpp, URL for xmpp.js)."""
        if transport == "starttls":
            return (self.host, self.c2s_port)
        if transport == "directtls":
            assert self.direct_tls_port is not None
            return (self.host, self.direct_tls_port)
        if transport == "websocket":
            assert self.ws_url is not None
            return self.ws_url
        raise ValueError(f"unknown transport {transport!r}")

    def service_url(self, transport: str) -> str:
        """The xmpp.js `service` URI for `transport`."""
        if transport == "websocket":
            assert self.ws_url is not None
            return self.ws_url
        if transport == "starttls":
            return f"xmpp://{self.host}:{self.c2s_port}"
        if transport == "directtls":
            return f"xmpps://{self.host}:{self.direct_tls_port}"
        raise ValueError(f"unknown transport {transport!r}")


class TargetError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Starling
# --------------------------------------------------------------------------------------------


def starling_config(*, domain: str, data_dir: Path, host: str, c2s_port: int, tls_port: int,
                    http_port: int, component_port: int, component_domain: str,
                    component_secret: str) -> str:
    """THE one place the interop suite writes Starling's config: adjust key names here only.

    No certificate is configured: the server generates a self-signed one, and every client
    in the suite is told to accept it.
    """
    return f"""\
# Written by interop/harness/targets.py for one interop run.
hosts = ["{domain}"]
data_dir = "{data_dir}"

[c2s]
listen = "{host}:{c2s_port}"              # RFC 6120 c2s, STARTTLS
direct_tls_listen = "{host}:{tls_port}"   # XEP-0368 Direct TLS

[http]
listen = "{host}:{http_port}"             # RFC 7395 WebSocket at /xmpp-websocket

[s2s]
listen = ""                               # no federation here (test_federation.py has its own)

[component]
listen = "{host}:{component_port}"        # XEP-0114 external components
[[component.services]]
domain = "{component_domain}"
secret = "{component_secret}"

[log]
stanzas = true                            # the stanza trace in server.log explains failures
"""


def starling_bin() -> Path:
    env = os.environ.get("STARLING_BIN")
    if env:
        p = Path(env)
        return p if p.is_absolute() else (REPO_ROOT / p)
    target_dir = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target_dir) if target_dir else REPO_ROOT / "target"
    if not base.is_absolute():
        base = REPO_ROOT / base
    return base / "debug" / "starling"


class StarlingTarget:
    name = "starling"
    # transport -> reason it is skipped on this target (none: Starling must do all of them)
    unsupported: dict[str, str] = {}

    def __init__(self) -> None:
        self.bin = starling_bin()
        self.host = "127.0.0.1"
        self.domain = "localhost"
        self.workdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.endpoints: Endpoints | None = None
        self.failed = False
        # XEP-0114: one external component the test_component.py scenarios connect as.
        self.component_domain = f"echo.{self.domain}"
        self.component_secret = "component-" + secrets.token_hex(8)
        self.component_port: int | None = None

    @property
    def config_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "starling.toml"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "server.log"

    def start(self) -> None:
        if not self.bin.is_file() or not os.access(self.bin, os.X_OK):
            raise TargetError(
                f"Starling binary not found or not executable: {self.bin} "
                "(build it with `cargo build -p starling`, or set STARLING_BIN)")
        self.workdir = Path(tempfile.mkdtemp(prefix="starling-interop-"))
        ports = set()
        while len(ports) < 4:
            ports.add(free_port(self.host))
        c2s, tls, http, component = sorted(ports)
        self.component_port = component
        data_dir = self.workdir / "data"
        data_dir.mkdir()
        self.config_path.write_text(starling_config(
            domain=self.domain, data_dir=data_dir, host=self.host,
            c2s_port=c2s, tls_port=tls, http_port=http, component_port=component,
            component_domain=self.component_domain, component_secret=self.component_secret))
        self.endpoints = Endpoints(
            domain=self.domain, host=self.host, c2s_port=c2s, direct_tls_port=tls,
            ws_url=f"ws://{self.host}:{http}/xmpp-websocket")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")  # plain server.log, readable in the failure report
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.bin), "serve", "--config", str(self.config_path)],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True)
        deadline = time.monotonic() + float(os.environ.get("INTEROP_START_TIMEOUT", "30"))
        waiting = {c2s: "c2s", tls: "direct TLS", http: "http", component: "component"}
        while waiting:
            if self.proc.poll() is not None:
                raise TargetError(
                    f"starling exited with code {self.proc.returncode} before opening its ports; "
                    f"log {self.log_path}:\n{tail(self.log_path)}")
            for port in [p for p in waiting if port_open(self.host, p)]:
                del waiting[port]
            if not waiting:
                break
            if time.monotonic() > deadline:
                raise TargetError(
                    "starling did not open "
                    + ", ".join(f"{name} port {port}" for port, name in waiting.items())
                    + f" in time; log {self.log_path}:\n{tail(self.log_path)}")
            time.sleep(0.1)

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin), "ctl", "--config", str(self.config_path), *args],
            cwd=self.workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=30)

    def register(self, user: str, password: str) -> None:
        r = self.ctl("register_identified", user, self.domain, password)
        expected = f"User {user}@{self.domain} successfully registered"
        if r.returncode != 0 or expected not in r.stdout:
            raise TargetError(
                f"`starling ctl register_identified {user} {self.domain} ...` exited "
                f"{r.returncode}; expected {expected!r} on stdout\n"
                f"stdout: {r.stdout.strip()}\nstderr: {r.stderr.strip()}")

    def register_random(self, password: str) -> str:
        """`ctl register HOST PASSWORD`: returns the generated local part."""
        r = self.ctl("register", self.domain, password)
        m = re.search(r"^User (\S+)@" + re.escape(self.domain) + r" successfully registered$",
                      r.stdout, re.M)
        if r.returncode != 0 or not m:
            raise TargetError(
                f"`starling ctl register {self.domain} ...` exited {r.returncode}; expected "
                f"'User <name>@{self.domain} successfully registered'\n"
                f"stdout: {r.stdout.strip()}\nstderr: {r.stderr.strip()}")
        return m.group(1)

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines) if self.workdir else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.failed = True
                print(f"starling did not stop within 10 s of SIGTERM; killed (log {self.log_path})")
        if self.workdir is not None:
            if self.failed or os.environ.get("INTEROP_KEEP"):
                print(f"starling work dir kept: {self.workdir}")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Reference servers (shared/refservers/servers.sh)
# --------------------------------------------------------------------------------------------


def refservers_dir() -> Path:
    candidates = [os.environ.get("REFSERVERS_DIR"), REPO_ROOT.parent / "shared" / "refservers",
                  "/work/shared/refservers"]
    for c in candidates:
        if c and (Path(c) / "servers.sh").is_file():
            return Path(c)
    raise TargetError("shared/refservers/servers.sh not found; set REFSERVERS_DIR")


@dataclass
class RefServerTarget:
    name: str  # "prosody" or "ejabberd"
    unsupported: dict[str, str] = field(default_factory=dict)
    started_here: bool = False
    failed: bool = False

    PORTS = {  # from shared/refservers/README.md
        "prosody": (25222, 25223, "ws://127.0.0.1:25280/xmpp-websocket"),
        "ejabberd": (15222, 15223, "ws://127.0.0.1:15280/ws"),
    }

    def __post_init__(self) -> None:
        if self.name not in self.PORTS:
            raise TargetError(f"unknown INTEROP_TARGET {self.name!r}")
        c2s, tls, ws = self.PORTS[self.name]
        self.endpoints = Endpoints(domain="localhost", host="127.0.0.1", c2s_port=c2s,
                                   direct_tls_port=tls, ws_url=ws)
        self.script = refservers_dir() / "servers.sh"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.script), *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        status = self._run("status", self.name).stdout
        if f"{self.name} running" in status and port_open("127.0.0.1", self.endpoints.c2s_port):
            return
        r = self._run("start", self.name)
        if r.returncode != 0:
            raise TargetError(f"servers.sh start {self.name} failed ({r.returncode}):\n"
                              f"{r.stdout}{r.stderr}\n(is it installed? "
                              f"`.ci/setup.sh --refserver {self.name}` installs it)")
        self.started_here = True

    def register(self, user: str, password: str) -> None:
        r = self._run("register", self.name, user, self.endpoints.domain, password, timeout=60)
        if r.returncode != 0:
            raise TargetError(f"servers.sh register {self.name} {user} failed "
                              f"({r.returncode}): {r.stdout}{r.stderr}")

    def log_tail(self, lines: int = 80) -> str:
        root = Path(os.environ.get("ACCEPT_ROOT", "/tmp/accept")) / self.name
        log = root / ("prosody.log" if self.name == "prosody" else "log/ejabberd.log")
        return tail(log, lines)

    def stop(self) -> None:
        if self.started_here and not os.environ.get("INTEROP_KEEP"):
            self._run("stop", self.name)


def make_target():
    name = os.environ.get("INTEROP_TARGET", "starling").strip().lower()
    if name == "starling":
        return StarlingTarget()
    return RefServerTarget(name)
