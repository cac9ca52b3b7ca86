#!/usr/bin/env bash
# Plain against end-to-end encrypted voice in one run: the same voice scenario with and without
# `--e2ee`, alternating (plain, e2ee, plain, e2ee, ...) for ROUNDS rounds, each on a freshly
# started release server; then the median of each figure per mode and the ratio (e2ee / plain).
# Join → first audio is to the first frame a peer could decrypt; server CPU is per forwarded
# packet; the tester's CPU includes its own encryption and decryption.
#
#   bench/e2ee.sh                                   # 10 rooms × (3 + 17), 20 s, 3 rounds
#   bench/e2ee.sh --rooms 1 --speakers 3 --listeners 47 --rounds 1 --out /tmp/e2ee
#
# Needs the release builds (cargo build --release -p confab-signaling -p confab-loadtest), jq,
# and a quiet machine (each run waits for a 1-minute load below MAX_LOAD, 0.7, at most 5 min).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
rooms=10; speakers=3; listeners=17; duration=20; rounds=3; out=""
while (($#)); do
  case "$1" in
    --rooms) rooms=$2; shift 2 ;;
    --speakers) speakers=$2; shift 2 ;;
    --listeners) listeners=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "e2ee bench: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
command -v jq >/dev/null || { echo "e2ee bench: needs jq" >&2; exit 1; }
[[ -n $out ]] || out=$(mktemp -d -t e2ee-bench.XXXXXX)
mkdir -p "$out"
git -C "$ROOT" rev-parse --short HEAD >"$out/commit" 2>/dev/null || echo unknown >"$out/commit"

quiet() {
  local waited=0
  while awk -v m="${MAX_LOAD:-0.7}" '{ exit !($1 >= m) }' /proc/loadavg && ((waited < 300)); do
    sleep 10; waited=$((waited + 10))
  done
}

args=(voice --rooms "$rooms" --speakers "$speakers" --listeners "$listeners" --duration "$duration")
for r in $(seq 1 "$rounds"); do
  for mode in plain e2ee; do
    quiet
    extra=(); [[ $mode == e2ee ]] && extra=(--e2ee)
    "$ROOT/loadtest/scripts/bench.sh" "$mode-r$r" "$out" -- "${args[@]}" "${extra[@]}" || true
  done
done

# One figure per run and mode, the median over the rounds, and the ratio.
figure() { # mode jq-expression
  local vals=()
  for f in "$out/$1"-r*.json; do
    [[ -f $f ]] || continue
    v=$(jq -r "$2 // empty" "$f")
    [[ -n $v ]] && vals+=("$v")
  done
  ((${#vals[@]})) || { echo "-"; return; }
  printf '%s\n' "${vals[@]}" | sort -g | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f\n", m }'
}
{
  echo "commit $(cat "$out/commit"), $rounds round(s) of: confab-loadtest ${args[*]} [--e2ee]"
  printf '| %-40s | %12s | %12s | %7s |\n' figure plain e2ee ratio
  printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..9})"
  for row in \
    "loss %|.voice.loss_percent" \
    "join p50 ms (op 4 → DTLS connected)|.voice.join_ms.p50" \
    "join p99 ms|.voice.join_ms.p99" \
    "first audio p50 ms (op 4 → first frame heard)|.voice.first_audio_ms.p50" \
    "first audio p99 ms|.voice.first_audio_ms.p99" \
    "server µs CPU / forwarded packet|.server.sfu_cpu_us_per_forwarded_packet" \
    "forwarded packets / s|.server.forwarded_packets_per_second" \
    "tester µs CPU / received packet|.loadtest.cpu_us_per_received_packet" \
    "latency p99 ms|.voice.latency_ms.p99"; do
    IFS='|' read -r label expr <<<"$row"
    p=$(figure plain "$expr"); e=$(figure e2ee "$expr")
    ratio=$(awk -v p="$p" -v e="$e" 'BEGIN { if (p + 0 > 0 && e != "-") printf "%.2f", e / p; else print "-" }')
    printf '| %-40s | %12s | %12s | %7s |\n' "$label" "$p" "$e" "$ratio"
  done
  for f in "$out"/e2ee-r*.json; do
    [[ -f $f ]] && echo "$(basename "$f" .json): $(jq -c '.voice.e2ee' "$f")"
  done
  for f in "$out"/*.loadavg.before; do
    n=$(basename "$f" .loadavg.before); echo "$n load $(cat "$f") -> $(cat "$out/$n.loadavg.after")"
  done
} | tee "$out/summary.md"
