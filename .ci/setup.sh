#!/usr/bin/env bash
# Installs what the test suite needs, skipping whatever is already there (safe to run often).
# Called by .ci/run (CI), ./test.sh and interop/run.sh; works as root, or through `sudo -n`,
# or else prints what to install. Never reads stdin.
#
#   .ci/setup.sh [--rust] [--refserver prosody|ejabberd]
#     (always)     interop/.venv from interop/requirements.txt, interop/js/node_modules (npm ci),
#                  Debian's profanity and tmux (for interop/test_profanity.py) and sendxmpp
#                  (for interop/test_sendxmpp.py), ejabberd, prosody, openssl and iproute2 (for
#                  interop/test_federation.py: shared/refservers/fedservers.sh runs them)
#     --rust       check cargo, rustfmt and clippy are present (nothing can be downloaded for them)
#     --refserver  also install a reference server from Debian (for INTEROP_TARGET=prosody|ejabberd)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

ROOT=$(cd "$(dirname "$0")/.." && pwd)
INTEROP=$ROOT/interop
want_rust=0
refservers=()
while [ $# -gt 0 ]; do
  case $1 in
    --rust) want_rust=1;;
    --refserver) refservers+=("$2"); shift;;
    --refserver=*) refservers+=("${1#*=}");;
    *) echo "setup.sh: unknown argument $1" >&2; exit 2;;
  esac
  shift
done

log() { echo "[setup] $*" >&2; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

sha() { sha256sum "$1" | cut -d' ' -f1; }

# ---- Debian packages (only when something is missing) -------------------------------------
apt_pkgs=()
need_pkg() { # package [command that proves it is there]
  if [ -n "${2:-}" ]; then
    command -v "$2" >/dev/null 2>&1 && return 0
  else
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" && return 0
  fi
  apt_pkgs+=("$1")
}

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || need_pkg python3 python3
if command -v "$PYTHON" >/dev/null 2>&1 && ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_pkg python3-venv
fi
need_pkg ca-certificates
# interop/test_profanity.py: the Profanity terminal client, driven through tmux;
# interop/test_sendxmpp.py: the sendxmpp command-line sender. Required in CI (CI=true);
# elsewhere, when they cannot be installed, those scenarios are skipped.
opt_pkgs=()
need_opt_pkg() { # like need_pkg
  local n=${#apt_pkgs[@]}
  need_pkg "$@"
  [ ${#apt_pkgs[@]} = "$n" ] || opt_pkgs+=("$1")
}
need_opt_pkg profanity profanity
need_opt_pkg tmux tmux
need_opt_pkg sendxmpp sendxmpp
# interop/test_federation.py: Starling federates with ejabberd and Prosody from Debian.
fed_pkgs_before=${#apt_pkgs[@]}
need_opt_pkg ejabberd ejabberdctl
need_opt_pkg prosody prosody
need_opt_pkg openssl openssl
need_opt_pkg iproute2 ss
fed_new=$(( ${#apt_pkgs[@]} - fed_pkgs_before ))
for r in "${refservers[@]}"; do
  case $r in
    starling|"") ;;
    prosody) need_pkg prosody prosody; need_pkg openssl openssl; need_pkg iproute2 ss;;
    ejabberd) need_pkg ejabberd ejabberdctl; need_pkg openssl openssl; need_pkg iproute2 ss;;
    *) die "unknown reference server '$r' (prosody or ejabberd)";;
  esac
done

if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n)
  elif [ "${CI:-}" != true ] && [ ${#apt_pkgs[@]} = ${#opt_pkgs[@]} ]; then
    log "WARNING: ${opt_pkgs[*]} not installed (no root, no sudo): interop/test_profanity.py,
    interop/test_sendxmpp.py and/or interop/test_federation.py will be skipped; install with:
    sudo apt-get update && sudo apt-get install -y ${opt_pkgs[*]}"
    apt_pkgs=()
  else
    die "missing Debian packages: ${apt_pkgs[*]}; install them with:
    sudo apt-get update && sudo apt-get install -y ${apt_pkgs[*]}"
  fi
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  log "apt-get install ${apt_pkgs[*]}"
  "${SUDO[@]}" apt-get update -q </dev/null
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${apt_pkgs[@]}" </dev/null
  # the Debian packages enable system services; our tests start their own instances
  for r in "${refservers[@]}"; do
    if [ "$r" = prosody ] && command -v systemctl >/dev/null 2>&1; then
      "${SUDO[@]}" systemctl disable --now prosody >/dev/null 2>&1 || true
    fi
  done
  if [ "$fed_new" -gt 0 ] && command -v systemctl >/dev/null 2>&1; then
    "${SUDO[@]}" systemctl disable --now ejabberd prosody >/dev/null 2>&1 || true
  fi
fi

# ---- Python: interop/.venv -------------------------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PYTHON is $("$PYTHON" --version 2>&1); the interop suite needs Python >= 3.11"
VENV=$INTEROP/.venv
stamp=$VENV/.requirements.sha256
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(sha "$INTEROP/requirements.txt")" ] \
   && "$VENV/bin/python" -c 'import slixmpp, pytest, pytest_timeout' >/dev/null 2>&1; then
  log "python venv up to date ($VENV)"
else
  log "creating $VENV from interop/requirements.txt"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install --no-input -q -r "$INTEROP/requirements.txt" </dev/null
  sha "$INTEROP/requirements.txt" > "$stamp"
fi

# ---- Node: interop/js/node_modules -----------------------------------------------------------
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
  || die "node and npm are needed (Node.js >= 20.10, for @xmpp/client); Debian's nodejs is too old"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=10)?0:1)' \
  || die "node $(node --version) is too old: @xmpp/client needs Node.js >= 20.10"
JS=$INTEROP/js
stamp=$JS/node_modules/.package-lock.sha256
if [ -d "$JS/node_modules/@xmpp/client" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(sha "$JS/package-lock.json")" ]; then
  log "node modules up to date ($JS/node_modules)"
else
  log "npm ci in interop/js"
  (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
  sha "$JS/package-lock.json" > "$stamp"
fi

# ---- Rust tools (checked, not installed: only the machine's toolchain can be used) ----------
if [ "$want_rust" = 1 ]; then
  command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup)"
  cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing: rustup component add rustfmt"
  cargo clippy --version >/dev/null 2>&1 || die "clippy missing: rustup component add clippy"
  log "rust: $(cargo --version)"
fi
log "done"
