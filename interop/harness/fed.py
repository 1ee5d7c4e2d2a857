"""Federation (RFC 6120 server-to-server, XEP-0220 dialback, SASL EXTERNAL with certificates)
interop harness: the reference servers of shared/refservers/fedservers.sh (ejabberd as ej.test,
Prosody as pr.test) and Starling as rs.test, each on its own loopback addresses.

    ejabberd  ej.test  c2s 127.0.0.1:16222  s2s 127.0.0.2:16269
    Prosody   pr.test  c2s 127.0.0.1:26222  s2s 127.0.0.3:26269
    Starling  rs.test  c2s 127.0.0.1:36222  s2s 127.0.0.4:36269

fedservers.sh makes a CA under /tmp/fed/ca in `certs` mode (and issues rs.test's certificate
from it); both reference servers know where rs.test is (FED_PEERS). Starling's s2s config is
written by `starling_fed_config()` below and nowhere else.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.targets import TargetError, port_open, starling_bin, tail

FED_ROOT = Path(os.environ.get("FED_ROOT", "/tmp/fed"))
CA_DIR = FED_ROOT / "ca"

STARLING_DOMAIN = "rs.test"
STARLING_C2S = ("127.0.0.1", 36222)
STARLING_S2S = ("127.0.0.4", 36269)


@dataclass(frozen=True)
class Server:
    """One federating server the scenarios log in to."""
    name: str  # "starling", "ejabberd", "prosody"
    domain: str
    c2s: tuple[str, int]
    s2s: tuple[str, int]


EJABBERD = Server("ejabberd", "ej.test", ("127.0.0.1", 16222), ("127.0.0.2", 16269))
PROSODY = Server("prosody", "pr.test", ("127.0.0.1", 26222), ("127.0.0.3", 26269))
STARLING = Server("starling", STARLING_DOMAIN, STARLING_C2S, STARLING_S2S)
REFERENCE = {s.name: s for s in (EJABBERD, PROSODY)}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def prosody_bidi() -> bool:
    """FED_PROSODY_BIDI=1: Prosody runs with mod_s2s_bidi (XEP-0288), so it offers and
    requests bidirectional streams."""
    return os.environ.get("FED_PROSODY_BIDI", "").lower() in ("1", "true", "yes")


def fedservers_script() -> Path | None:
    repo_root = Path(__file__).resolve().parents[2]
    for c in (os.environ.get("REFSERVERS_DIR"), repo_root.parent / "shared" / "refservers",
              "/work/shared/refservers"):
        if c and (Path(c) / "fedservers.sh").is_file():
            return Path(c) / "fedservers.sh"
    return None


def missing_prerequisites() -> list[str]:
    """What the federation scenarios need and this machine lacks (empty: all there)."""
    missing = []
    if fedservers_script() is None:
        missing.append("shared/refservers/fedservers.sh (set REFSERVERS_DIR)")
    for cmd, pkg in (("ejabberdctl", "ejabberd"), ("prosody", "prosody"),
                     ("prosodyctl", "prosody"), ("openssl", "openssl"), ("ss", "iproute2"),
                     ("runuser", "util-linux")):
        if shutil.which(cmd) is None and not Path(f"/usr/sbin/{cmd}").exists():
            missing.append(f"{cmd} (Debian package {pkg})")
    if os.geteuid() != 0:
        missing.append("root (fedservers.sh runs the servers as their own users)")
    return missing


class FedServers:
    """fedservers.sh: start/stop the two reference servers in a mode, register accounts."""

    def __init__(self, peers: str) -> None:
        script = fedservers_script()
        if script is None:
            raise TargetError("fedservers.sh not found")
        self.script = script
        self.env = dict(os.environ, FED_PEERS=peers, FED_ROOT=str(FED_ROOT))
        self.started = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.script), *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, env=self.env)

    def restart(self, mode: str) -> None:
        self.started = True
        r = self._run("restart", mode)
        if r.returncode != 0:
            raise TargetError(f"fedservers.sh restart {mode} failed ({r.returncode}):\n"
                              f"{r.stdout}{r.stderr}")
        if prosody_bidi():
            self._prosody_with_module("s2s_bidi")

    def _prosody_with_module(self, module: str) -> None:
        """Restarts the Prosody fedservers.sh started, with one more module enabled (its
        generated config edited; fedservers.sh's own files are left alone). Only the PID
        Prosody recorded is signalled; the new one records its own, so `stop` still works."""
        pr = FED_ROOT / "prosody"
        cfg = pr / "prosody.cfg.lua"
        text = cfg.read_text()
        if f'"{module}";' not in text:
            text = text.replace("modules_enabled = {", f'modules_enabled = {{ "{module}";', 1)
            cfg.write_text(text)
        pid_file = pr / "prosody.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError) as e:
            raise TargetError(f"no Prosody PID in {pid_file}: {e}") from e
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        with open(pr / "console.log", "ab") as console:
            launcher = subprocess.Popen(
                ["setsid", "runuser", "-u", "prosody", "--", "/usr/bin/prosody", "--config",
                 str(cfg)], stdin=subprocess.DEVNULL, stdout=console, stderr=console)
        (pr / "launcher.pid").write_text(f"{launcher.pid}\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if port_open(*PROSODY.c2s) and port_open(*PROSODY.s2s):
                time.sleep(0.5)
                return
            time.sleep(0.25)
        raise TargetError(f"Prosody with {module} did not open its ports:\n"
                          f"{tail(pr / 'prosody.log', 20)}")

    def stop(self) -> None:
        if self.started:
            self._run("stop")
            self.started = False

    def cert(self, domain: str) -> tuple[Path, Path]:
        r = self._run("cert", domain)
        crt, key = CA_DIR / f"{domain}.crt", CA_DIR / f"{domain}.key"
        if r.returncode != 0 or not crt.is_file() or not key.is_file():
            raise TargetError(f"fedservers.sh cert {domain} failed ({r.returncode}):\n"
                              f"{r.stdout}{r.stderr}")
        return crt, key

    def register(self, server: str, user: str, domain: str, password: str) -> None:
        r = self._run("register", server, user, domain, password, timeout=60)
        if r.returncode != 0:
            raise TargetError(f"fedservers.sh register {server} {user}@{domain} failed "
                              f"({r.returncode}): {r.stdout}{r.stderr}")

    def log_tail(self, server: str, lines: int = 40) -> str:
        if server == "prosody":
            return tail(FED_ROOT / "prosody" / "prosody.log", lines)
        if server == "ejabberd":
            return tail(FED_ROOT / "ejabberd" / "log" / "ejabberd.log", lines)
        return ""


def starling_fed_config(*, data_dir: Path, mode: str, cert: Path, key: Path) -> str:
    """THE one place the federation scenarios write Starling's config."""
    ca = f'ca_file = "{CA_DIR / "ca.pem"}"\n' if mode == "certs" else ""
    routes = "".join(
        f'\n[[s2s.routes]]\ndomain = "{s.domain}"\nhost = "{s.s2s[0]}"\nport = {s.s2s[1]}\n'
        for s in REFERENCE.values())
    return f"""\
# Written by interop/harness/fed.py for one federation interop run ({mode}).
hosts = ["{STARLING_DOMAIN}"]
data_dir = "{data_dir}"

[c2s]
listen = "{STARLING_C2S[0]}:{STARLING_C2S[1]}"
direct_tls_listen = ""

[http]
listen = ""

[tls]
certs = [{{ cert = "{cert}", key = "{key}" }}]

[s2s]
listen = "{STARLING_S2S[0]}:{STARLING_S2S[1]}"
{ca}default_policy = "{mode}"
{routes}
[log]
stanzas = true
"""


class StarlingFed:
    """Starling as rs.test: one data folder per mode, restarted per scenario (so every
    scenario establishes its server-to-server streams afresh)."""

    def __init__(self, mode: str, cert: Path, key: Path) -> None:
        self.bin = starling_bin()
        if not self.bin.is_file():
            raise TargetError(f"Starling binary not found: {self.bin} (cargo build -p starling)")
        self.mode = mode
        self.workdir = Path(tempfile.mkdtemp(prefix=f"starling-fed-{mode}-"))
        (self.workdir / "data").mkdir()
        self.config = self.workdir / "starling.toml"
        self.config.write_text(starling_fed_config(data_dir=self.workdir / "data", mode=mode,
                                                   cert=cert, key=key))
        self.log = self.workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.failed = False
        # Once it could not start, later scenarios of the mode fail at once instead of waiting.
        self.start_error: str | None = None

    def start(self, timeout: float = 30) -> None:
        if self.start_error is not None:
            raise TargetError(f"(as before) {self.start_error}")
        try:
            self._start(timeout)
        except TargetError as e:
            self.start_error = str(e)
            self.failed = True
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("NO_COLOR", "1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.bin), "serve", "--config", str(self.config)], cwd=self.workdir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        waiting = [STARLING_C2S, STARLING_S2S]
        while waiting:
            if self.proc.poll() is not None:
                raise TargetError(f"starling exited with code {self.proc.returncode}; "
                                  f"log {self.log}:\n{tail(self.log)}")
            waiting = [a for a in waiting if not port_open(*a)]
            if waiting and time.monotonic() > deadline:
                raise TargetError(f"starling did not open {waiting} in time; log {self.log}:\n"
                                  f"{tail(self.log)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.failed = True
        self.proc = None

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin), "ctl", "--config", str(self.config), *args],
                              cwd=self.workdir, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=30)

    def register(self, user: str, password: str) -> None:
        r = self.ctl("register_identified", user, STARLING_DOMAIN, password)
        if r.returncode != 0:
            raise TargetError(f"starling ctl register_identified {user} failed "
                              f"({r.returncode}): {r.stdout}{r.stderr}")

    def cleanup(self) -> None:
        self.stop()
        if self.failed or os.environ.get("INTEROP_KEEP"):
            print(f"starling federation work dir kept: {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
