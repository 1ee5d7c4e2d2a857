#!/usr/bin/env bash
# Runs the interop suite against $INTEROP_TARGET (default: the Starling binary $STARLING_BIN,
# default target/debug/starling). Extra arguments go to pytest, e.g. `interop/run.sh -k chat`.
# Installs its own dependencies first (.ci/setup.sh, a no-op when they are there).
# Ends with the plain line "N passed, M failed"; exits non-zero on any failure or when no
# test ran (pytest's exit code 5).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
target=${INTEROP_TARGET:-starling}

setup_args=()
[ "$target" != starling ] && setup_args+=(--refserver "$target")
bash "$ROOT/.ci/setup.sh" "${setup_args[@]}" </dev/null

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
set +e
INTEROP_SUMMARY_FILE=$summary "$HERE/.venv/bin/python" -m pytest -c "$HERE/pytest.ini" \
  --rootdir "$HERE" "$HERE" "$@" </dev/null
rc=$?
set -e

line=$(cat "$summary" 2>/dev/null || true)
case $rc in
  0) ;;
  5) echo "interop: pytest collected no tests: counted as a failure"; rc=1; line="0 passed, 1 failed";;
  *) [ -n "$line" ] || line="0 passed, 1 failed"  # pytest stopped before its summary
     ;;
esac
echo "$line"
exit $rc
