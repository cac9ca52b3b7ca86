#!/usr/bin/env bash
# Runs one benchmark against a freshly started release Confab and keeps the
# JSON, the HTML report and the load average.
#   loadtest/scripts/bench.sh NAME OUTDIR -- confab-loadtest args...
# Env: CONFAB (server binary), LOADTEST (tester binary), PORT, CONFAB_ARGS (extra server flags).
set -euo pipefail
name=$1; out=$2; shift 2; [ "${1:-}" = "--" ] && shift
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONFAB=${CONFAB:-$ROOT/target/release/confab}
LOADTEST=${LOADTEST:-$ROOT/target/release/confab-loadtest}
PORT=${PORT:-3950}
mkdir -p "$out"
data=$(mktemp -d); chmod 755 "$data"
"$CONFAB" --bind 127.0.0.1:$PORT --udp-port 0 --data-dir "$data" --rate-limit-scale 1000 \
  ${CONFAB_ARGS:-} >"$out/$name.server.log" 2>&1 &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 300); do
  curl -fs -o /dev/null http://127.0.0.1:$PORT/readyz && break; sleep 0.2
done
cut -d' ' -f1-3 /proc/loadavg >"$out/$name.loadavg.before"
rc=0
"$LOADTEST" "$@" --url http://127.0.0.1:$PORT --json "$out/$name.json" --report "$out/$name.html" \
  >"$out/$name.txt" 2>"$out/$name.err" || rc=$?
cut -d' ' -f1-3 /proc/loadavg >"$out/$name.loadavg.after"
echo "$name: exit $rc, load $(cat "$out/$name.loadavg.before") -> $(cat "$out/$name.loadavg.after")"
