#!/usr/bin/env bash
# Side-by-side load runs: the same starling-bench scenarios against Starling, ejabberd and
# Prosody, one server after another in one run, then a table of each figure with its ratio to
# Starling (bench/report.py). Absolute numbers drift on shared machines; quote the ratios.
#
#   bench/compare.sh                       # the budget table (docs/PERFORMANCE.md)
#   SERVERS="starling prosody" bench/compare.sh
#   USERS=19500 PAIRS=1000 RATE=5000 bench/compare.sh
#
# Ports: Starling 127.0.0.1:35222 (its own data in $BENCH_ROOT/starling), ejabberd 15222 and
# Prosody 25222 started by ../shared/refservers/servers.sh (domain localhost, in-band
# registration open). Results: one JSON line per scenario in $BENCH_ROOT/results.jsonl.
#
# What each step measures (see docs/PERFORMANCE.md for the method):
#   connect  USERS sessions over STARTTLS, LOGIN_CONCURRENCY logins in flight, held idle; server
#            RSS sampled at each count in RSS_AT → RSS per idle session; CPU per login; logins/s
#   chat     PAIRS pairs at the maximum rate → server CPU per delivered message
#   latency  LAT_PAIRS pairs at RATE msgs/s → p50/p90/p99/max delivery latency
#   muc      MUC_ROOMS rooms of MUC_OCCUPANTS → fan-out deliveries/s (servers with MUC only)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
REFSERVERS=${REFSERVERS:-$ROOT/../shared/refservers}
# runuser/su shims: the reference servers keep our file-descriptor limit (see bench/shims/).
export PATH=$HERE/shims:$PATH
ulimit -n "$(ulimit -Hn)"
BENCH_ROOT=${BENCH_ROOT:-/tmp/starling-bench}
SERVERS=${SERVERS:-starling ejabberd prosody}
USERS=${USERS:-19500}
RSS_AT=${RSS_AT:-1000,10000,19500}
LOGIN_CONCURRENCY=${LOGIN_CONCURRENCY:-100}
LOGIN_USERS=${LOGIN_USERS:-5000}
PAIRS=${PAIRS:-1000}
CHAT_SECS=${CHAT_SECS:-20s}
LAT_PAIRS=${LAT_PAIRS:-1000}
RATE=${RATE:-5000}
MUC_ROOMS=${MUC_ROOMS:-10}
MUC_OCCUPANTS=${MUC_OCCUPANTS:-100}
SOURCE=${SOURCE:-127.0.0.2-127.0.0.9}
PASSWORD=${PASSWORD:-benchpass}
SCENARIOS=${SCENARIOS:-connect logins chat latency muc curves}
# Scaling curves (the "curves" scenario): throughput against pairs at the maximum rate,
# latency against the offered rate, MUC fan-out against room size.
CURVE_PAIRS=${CURVE_PAIRS:-10 100 1000}
CURVE_RATES=${CURVE_RATES:-1000 5000 10000 20000}
CURVE_ROOM_SIZES=${CURVE_ROOM_SIZES:-10 100 1000}
CURVE_SECS=${CURVE_SECS:-5s}
# Starling has no message archive yet; the reference configs archive every chat message
# (XEP-0313). ARCHIVE=off (the default) turns their 1:1 archiving off so the chat figures
# compare the same work; ARCHIVE=on keeps the reference configs as they are.
ARCHIVE=${ARCHIVE:-off}

log() { echo "[compare.sh] $*" >&2; }
mkdir -p "$BENCH_ROOT"
RESULTS=$BENCH_ROOT/results.jsonl
: > "$RESULTS"

cargo build --release -p starling -p starling-bench --manifest-path "$ROOT/Cargo.toml" >&2
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
BENCH=$BIN/starling-bench

starling_pid=""
start_starling() {
  local dir=$BENCH_ROOT/starling
  rm -rf "$dir"; mkdir -p "$dir"
  cat > "$dir/starling.toml" <<TOML
hosts = ["localhost"]
data_dir = "$dir/data"
[c2s]
listen = "127.0.0.1:35222"
direct_tls_listen = "127.0.0.1:35223"
[http]
listen = "127.0.0.1:35280"
[s2s]
listen = ""
[registration]
enabled = true
min_interval_secs = 0
[log]
level = "warn"
TOML
  "$BIN/starling" serve --config "$dir/starling.toml" > "$dir/console.log" 2>&1 &
  starling_pid=$!
  for _ in $(seq 1 40); do
    ss -ltn 'sport = :35222' | grep -q LISTEN && return 0
    sleep 0.25
  done
  log "starling did not start; see $dir/console.log"; return 1
}
stop_starling() { [ -n "$starling_pid" ] && kill "$starling_pid" 2>/dev/null && wait "$starling_pid" 2>/dev/null; starling_pid=""; }
trap 'stop_starling; bash "$REFSERVERS/servers.sh" stop all >/dev/null 2>&1 || true' EXIT

port_of() { case $1 in starling) echo 35222;; ejabberd) echo 15222;; prosody) echo 25222;; esac; }
pid_of() {
  case $1 in
    starling) echo "$starling_pid";;
    ejabberd) cat /tmp/accept/ejabberd/ejabberd.pid;;
    prosody) cat /tmp/accept/prosody/prosody.pid;;
  esac
}

# Each server logs in with the mechanism that is cheapest for it: Starling stores SCRAM keys
# (the client caches its salted password, as Conversations and Gajim do, so the server does
# no PBKDF2); the reference configs store plain passwords and pick a fresh salt per SCRAM
# login, so PLAIN (over TLS) is their cheapest path.
mechanism_of() { case $1 in starling) echo "${MECH_STARLING:-SCRAM-SHA-256}";; *) echo "${MECH_REF:-PLAIN}";; esac; }

# bench SERVER STEP SCENARIO ARGS...: one scenario, its JSON line tagged and appended.
bench() {
  local server=$1 step=$2; shift 2
  local line
  log "$server: $step: starling-bench $*"
  line=$("$BENCH" "$@" --server "127.0.0.1:$(port_of "$server")" --domain localhost \
    --password "$PASSWORD" --source "$SOURCE" --pid "$(pid_of "$server")" \
    --mechanism "$(mechanism_of "$server")" --json-only) || true
  if [ -z "$line" ]; then
    line='{"error":"no summary (the run failed)"}'
  fi
  python3 -c 'import json,sys; d=json.loads(sys.argv[3]); d["server_name"]=sys.argv[1]; d["step"]=sys.argv[2]; print(json.dumps(d))' \
    "$server" "$step" "$line" >> "$RESULTS"
}

for server in $SERVERS; do
  case $server in
    starling) start_starling;;
    ejabberd)
      # The reference config leaves ejabberd's listen backlog at 5, which drops connection
      # attempts under 100 concurrent logins: the same config with a backlog of 1024.
      sed 's/^    module: ejabberd_c2s$/    module: ejabberd_c2s\n    backlog: 1024/' \
        "$REFSERVERS/conf/ejabberd.yml" > "$BENCH_ROOT/ejabberd.yml"
      if [ "$ARCHIVE" = off ]; then
        sed -i '/^  mod_mam:/,/^  mod_muc:/{/^  mod_muc:/!d}' "$BENCH_ROOT/ejabberd.yml"
      fi
      EJ_TEMPLATE=$BENCH_ROOT/ejabberd.yml bash "$REFSERVERS/servers.sh" start ejabberd;;
    prosody)
      bash "$REFSERVERS/servers.sh" start prosody
      if [ "$ARCHIVE" = off ]; then
        runuser -u prosody -- prosodyctl --config /tmp/accept/prosody/prosody.cfg.lua \
          shell "module:unload('mam', 'localhost')" >&2
      fi;;
    *) log "unknown server $server"; exit 2;;
  esac
  log "$server: $(grep 'Max open files' "/proc/$(pid_of "$server")/limits")"
  sleep 2
  bench "$server" register register --users "$USERS" --concurrency 50
  for s in $SCENARIOS; do
    case $s in
      connect) bench "$server" connect connect --users "$USERS" --rss-at "$RSS_AT" \
                 --concurrency "$LOGIN_CONCURRENCY" --hold 5s;;
      logins)  bench "$server" logins connect --users "$LOGIN_USERS" \
                 --concurrency "$LOGIN_CONCURRENCY" --hold 1s;;
      chat)    bench "$server" chat chat --pairs "$PAIRS" --rate max --duration "$CHAT_SECS";;
      latency) bench "$server" latency chat --pairs "$LAT_PAIRS" --rate "$RATE" --duration "$CHAT_SECS";;
      muc)     bench "$server" muc muc --rooms "$MUC_ROOMS" --occupants "$MUC_OCCUPANTS" \
                 --muc-service conference.localhost --duration 10s;;
      curves)
        for n in $CURVE_PAIRS; do
          bench "$server" "pairs-$n" chat --pairs "$n" --rate max --duration "$CURVE_SECS"
        done
        for r in $CURVE_RATES; do
          bench "$server" "rate-$r" chat --pairs "$LAT_PAIRS" --rate "$r" --duration "$CURVE_SECS"
        done
        for n in $CURVE_ROOM_SIZES; do
          bench "$server" "room-$n" muc --rooms 1 --occupants "$n" --rate max \
            --muc-service conference.localhost --duration "$CURVE_SECS"
        done;;
      *) log "unknown scenario $s"; exit 2;;
    esac
  done
  case $server in
    starling) stop_starling;;
    *) bash "$REFSERVERS/servers.sh" stop "$server";;
  esac
done

python3 "$HERE/report.py" "$RESULTS"
