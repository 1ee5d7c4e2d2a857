#!/usr/bin/env bash
# A short smoke of the load tool against a freshly started Starling, so CI keeps starling-bench
# working: a few hundred sessions for a few seconds over each transport. It checks that every
# scenario completes with no failures and no losses (the tool's exit code); it asserts no
# timings, which on shared CI machines would only measure the neighbours.
#
#   bench/smoke.sh            uses target/debug/{starling,starling-bench}
#   STARLING_BIN=… BENCH_BIN=… bench/smoke.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
STARLING_BIN=${STARLING_BIN:-$TARGET/debug/starling}
BENCH_BIN=${BENCH_BIN:-$TARGET/debug/starling-bench}
[ -x "$BENCH_BIN" ] || cargo build -p starling-bench --manifest-path "$ROOT/Cargo.toml"

dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
c2s=$(free_port); tls=$(free_port); http=$(free_port)
cat > "$dir/starling.toml" <<TOML
hosts = ["localhost"]
data_dir = "$dir/data"
[c2s]
listen = "127.0.0.1:$c2s"
direct_tls_listen = "127.0.0.1:$tls"
[http]
listen = "127.0.0.1:$http"
[s2s]
listen = ""
[registration]
enabled = true
min_interval_secs = 0
[log]
level = "warn"
TOML
"$STARLING_BIN" serve --config "$dir/starling.toml" > "$dir/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 80); do
  ss -ltn "sport = :$c2s" | grep -q LISTEN && break
  sleep 0.25
done

failed=0
step() { # name args...
  local name=$1; shift
  echo "==> bench smoke: $name"
  if ! "$BENCH_BIN" "$@" --pid "$pid" --no-progress \
      --scram-cache "$dir/scram-cache" --json-only; then
    echo "bench smoke: $name FAILED" >&2
    failed=1
  fi
}
s="--server 127.0.0.1:$c2s"
step register register --users 300 --concurrency 20 $s
step connect connect --users 300 --concurrency 50 --hold 2s --rss-at 100,300 \
  --source 127.0.0.2-127.0.0.3 $s
step "chat (fixed rate)" chat --pairs 100 --rate 500 --duration 3s $s
step "chat (max rate)" chat --pairs 20 --rate max --duration 2s $s
step "chat (direct TLS)" chat --pairs 20 --rate 200 --duration 2s --transport tls \
  --server "127.0.0.1:$tls"
step "chat (WebSocket)" chat --pairs 20 --rate 200 --duration 2s --transport ws \
  --ws-url "ws://127.0.0.1:$http/xmpp-websocket"
step presence presence --users 30 --contacts 4 --duration 3s $s
if [ $failed != 0 ]; then
  echo "--- server log (last 30 lines)"; tail -n 30 "$dir/server.log"
  exit 1
fi
echo "bench smoke: all scenarios completed with no failures and no losses"
