#!/usr/bin/env bash
# Every figure of the summary table at the top of docs/benchmarks.md, each run RUNS times (3)
# against a freshly started release server, then the table regenerated from the medians
# (bench/summary.py). Each run waits for a quiet machine first (1-minute load average below
# MAX_LOAD) and records the load before and after it and the commit measured.
#
#   bench/run-all.sh                         # everything, 3 runs each (about 1 h 15 min)
#   bench/run-all.sh --only voice-1500,chat-peak --runs 1
#   bench/run-all.sh --list                  # the scenarios and their commands
#   bench/run-all.sh --summary-only DIR      # regenerate the table from an earlier run's DIR
#
# Options: --out DIR (default: a new directory under $TMPDIR), --no-build, --no-write (print
# the table instead of writing docs/benchmarks.md). Env: MAX_LOAD (0.7), QUIET_WAIT seconds (600).
# Needs root for the Janus comparison (network namespaces); it is skipped without.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# name | confab-loadtest arguments (the URL and outputs are added by loadtest/scripts/bench.sh)
# [| extra server flags]. Keep the names: bench/summary.py reads the results by them.
# The idle runs heartbeat every 3 s and sample after 12 s: an idle connection's steady state is
# after its first heartbeat has acknowledged the dispatches of everyone coming online.
SCENARIOS=(
  "voice-400|voice --rooms 1 --speakers 3 --listeners 400 --duration 30"
  "voice-1500|voice --rooms 1 --speakers 3 --listeners 1500 --duration 30"
  "small-rooms|voice --rooms 50 --speakers 2 --listeners 8 --duration 30"
  "join-storm|voice --rooms 1 --speakers 3 --listeners 1997 --join-rate 50 --duration 20"
  "chat-peak|chat --clients 10 --channels 1 --rate 20000 --duration 30"
  "chat-fanout|chat --clients 1000 --channels 1 --rate 500 --duration 30"
  "idle-100|chat --clients 2000 --users 100 --rate 0 --duration 5 --settle 12|--heartbeat-interval-ms 3000"
  "idle-10k|chat --clients 2000 --users 100 --members 10000 --rate 0 --duration 5 --settle 12|--heartbeat-interval-ms 3000"
  "video-2x200|video --publishers 2 --viewers 200 --tile-mix 320x180,640x360,1280x720 --duration 30"
  "golive-200|video --publishers 1 --viewers 200 --screen 1080p60 --tile-mix 1920x1080,960x540,480x270 --duration 30"
)

runs=3
only=""
out=""
build=1
write=1
summary_only=""
while (($#)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-write) write=0; shift ;;
    --summary-only) summary_only=$2; shift 2 ;;
    --list)
      for s in "${SCENARIOS[@]}"; do
        IFS='|' read -r n a f <<<"$s"
        printf '%-12s confab-loadtest %s%s\n' "$n" "$a" "${f:+ (server: $f)}"
      done
      printf '%-12s bench/compare-janus.sh --listeners "400 800"\n' janus
      exit 0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "run-all: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done

summarise() {
  local args=("$1")
  ((write)) && args+=(--write docs/benchmarks.md)
  python3 bench/summary.py "${args[@]}"
}
if [[ -n $summary_only ]]; then
  summarise "$summary_only"
  exit 0
fi

wanted() { [[ -z $only ]] || [[ ",$only," == *",$1,"* ]]; }
out=${out:-$(mktemp -d)}
mkdir -p "$out"
git rev-parse --short HEAD >"$out/commit" 2>/dev/null || echo unknown >"$out/commit"
date -u +%Y-%m-%dT%H:%MZ >"$out/started"
if ((build)); then
  cargo build --release -p confab-signaling -p confab-loadtest
fi

# Waits until the 1-minute load average is below MAX_LOAD (a build or test suite on 2 cores
# would be measured along with the server), at most QUIET_WAIT seconds; says what it found.
quiet() {
  local max=${MAX_LOAD:-0.7} waited=0 limit=${QUIET_WAIT:-600}
  while awk -v m="$max" '{ exit !($1 >= m) }' /proc/loadavg; do
    if ((waited >= limit)); then
      echo "run-all: load still $(cut -d' ' -f1 /proc/loadavg) after ${limit} s; measuring anyway" >&2
      return
    fi
    sleep 10; waited=$((waited + 10))
  done
}

for s in "${SCENARIOS[@]}"; do
  IFS='|' read -r name argline server_flags <<<"$s"
  wanted "$name" || continue
  read -r -a args <<<"$argline"
  for r in $(seq 1 "$runs"); do
    quiet
    CONFAB_ARGS="${server_flags:-}" loadtest/scripts/bench.sh "$name-r$r" "$out" -- "${args[@]}" || true
  done
done

if wanted janus; then
  if [[ $(id -u) == 0 ]] && bench/compare-janus.sh --can-run >/dev/null 2>&1; then
    for r in $(seq 1 "$runs"); do
      quiet
      cut -d' ' -f1-3 /proc/loadavg >"$out/janus-r$r.loadavg.before"
      bench/compare-janus.sh --listeners "400 800" --out "$out/janus-r$r" >"$out/janus-r$r.txt" 2>&1 || true
      cut -d' ' -f1-3 /proc/loadavg >"$out/janus-r$r.loadavg.after"
    done
  else
    echo "run-all: skipping the Janus comparison (needs root and network namespaces)" >&2
  fi
fi

echo "run-all: results in $out"
summarise "$out"
