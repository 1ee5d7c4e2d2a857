#!/usr/bin/env bash
# Starling's one test command, for developers and CI alike:
#
#   ./test.sh            setup, fmt, clippy, test, build, bench, interop (in that order)
#   ./test.sh STEP...    only those steps, e.g. `./test.sh build interop`
#
#   setup    install what the tests need, skipping what is there (.ci/setup.sh)
#   fmt      cargo fmt --all --check
#   clippy   cargo clippy --workspace --all-targets -- -D warnings
#   test     cargo test --workspace
#   build    cargo build -p starling -p starling-bench (the server and the load tool)
#   bench    a short smoke of the load tool against the built server (bench/smoke.sh; no timings)
#   interop  real clients (slixmpp, xmpp.js, Profanity, sendxmpp) and federation with ejabberd
#            and Prosody, against the built binary (interop/run.sh)
#
# Every step runs even when an earlier one failed, so one run shows every problem; interop
# needs the binary, so it does not run when `build` failed. Exits non-zero if any step failed.
# STARLING_BIN overrides the binary interop runs; INTEROP_TARGET=prosody runs the interop
# scenarios against Prosody instead (see interop/README.md).
set -uo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive

all=(setup fmt clippy test build bench interop)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${all[@]}")
for s in "${steps[@]}"; do
  case " ${all[*]} " in *" $s "*) ;; *) echo "test.sh: unknown step '$s' (${all[*]})" >&2; exit 2;; esac
done

target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir=$PWD/$target_dir;; esac
results=()
failed=0
build_failed=0
interop_line=""

run() { # name command...
  local name=$1; shift
  echo
  echo "==> $name: $*"
  local start=$SECONDS rc=0
  "$@" </dev/null || rc=$?
  if [ $rc = 0 ]; then
    results+=("PASS  $name ($((SECONDS - start)) s)")
  else
    results+=("FAIL  $name (exit $rc, $((SECONDS - start)) s)")
    failed=1
  fi
  return $rc
}

interop() {
  local out rc=0
  out=$(mktemp)
  STARLING_BIN=${STARLING_BIN:-$target_dir/debug/starling} bash interop/run.sh 2>&1 | tee "$out" || rc=$?
  interop_line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1 || true)
  rm -f "$out"
  return $rc
}

for step in "${steps[@]}"; do
  case $step in
    setup) run setup bash .ci/setup.sh --rust ;;
    fmt) run fmt cargo fmt --all --check ;;
    clippy) run clippy cargo clippy --workspace --all-targets -- -D warnings ;;
    test) run test cargo test --workspace ;;
    build) run build cargo build -p starling -p starling-bench || build_failed=1 ;;
    bench)
      if [ $build_failed = 1 ]; then
        results+=("FAIL  bench (not run: the build failed)")
        failed=1
      else
        run bench bash bench/smoke.sh
      fi ;;
    interop)
      if [ $build_failed = 1 ] && [ -z "${STARLING_BIN:-}" ] && [ "${INTEROP_TARGET:-starling}" = starling ]; then
        results+=("FAIL  interop (not run: the build failed)")
        failed=1
      else
        run interop interop
      fi ;;
  esac
done

echo
echo "==> test.sh summary"
printf '%s\n' "${results[@]}"
if [ -n "$interop_line" ]; then
  echo "interop: $interop_line"
fi
exit $failed
