#!/usr/bin/env bash
# Voice across a cluster: the voice benchmark (one room, S speakers, L listeners) alternately
# against one `confab` node (role all, no NATS) and against the cluster of scripts/cluster.sh
# (3 api nodes and 2 media nodes on one PostgreSQL and a private NATS). In the cluster the
# peers' gateways are spread round-robin over the api nodes (`confab-loadtest --nodes`); their
# media goes to the media node the channel is placed on. Server CPU per forwarded packet is
# summed over the media nodes' /metrics (`--media-metrics`) over the steady state. Prints each
# run's loss, one-way p99, join p50/p99 and server µs per forwarded packet, then the medians side
# by side.
#
#   bench/cluster-voice.sh                       # release, 3 speakers + 200 listeners, 30 s, 3 rounds
#   bench/cluster-voice.sh --listeners 50 --duration 10 --rounds 1 --out DIR
#   bench/cluster-voice.sh --smoke               # debug builds, 3 + 6 peers, 5 s, 1 round
#   bench/cluster-voice.sh --listeners 800 --media-capacity 402   # the channel spans both media nodes
#   bench/cluster-voice.sh --media-capacity 102 --kill-media-after 15 # kill -9 media-2 mid-run
#
# --media-capacity N caps the participants per media node: past N the channel spreads to the other
# media node and the two relay its audio (docs/relay.md). --kill-media-after S kills media-2 with
# kill -9 S seconds into each cluster run (restarted before the next); its peers are told to
# reconnect, and the run reports how many heard audio again within 5 s (the silence from the last
# packet on the dead node to the first on the new one).
#
# Last line: `single_loss_percent=… cluster_loss_percent=… single_p99_ms=… cluster_p99_ms=…
# single_join_p50_ms=… cluster_join_p50_ms=… single_join_p99_ms=… cluster_join_p99_ms=…
# single_us_per_packet=… cluster_us_per_packet=…` (medians over the rounds). --smoke fails when a run loses more
# than 5% or a peer fails to join, or when the api nodes did not all serve peers.
#
# Needs what scripts/cluster.sh needs (nats-server, nginx, PostgreSQL), jq and curl. Env:
# CONFAB_BIN, LOADTEST_BIN (default: target/release/…, or target/debug/… with --smoke; built when
# missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
speakers=3
listeners=200
duration=30
rounds=3
join_rate=50
out=""
profile=release
smoke=0
max_loss=5
capacity=0
kill_after=0
while (($#)); do
  case "$1" in
    --speakers) speakers=$2; shift 2 ;;
    --listeners) listeners=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --join-rate) join_rate=$2; shift 2 ;;
    --media-capacity) capacity=$2; shift 2 ;;
    --kill-media-after) kill_after=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --smoke) smoke=1; profile=debug; listeners=6; duration=5; rounds=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "cluster-voice: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
for tool in jq curl nats-server nginx; do
  command -v "$tool" >/dev/null || { echo "cluster-voice: needs $tool (scripts/install-deps.sh --test)" >&2; exit 1; }
done
export CONFAB_BIN=${CONFAB_BIN:-$ROOT/target/$profile/confab}
LOADTEST_BIN=${LOADTEST_BIN:-$ROOT/target/$profile/confab-loadtest}
if [[ ! -x $CONFAB_BIN || ! -x $LOADTEST_BIN ]]; then
  flag=(); [[ $profile == release ]] && flag=(--release)
  (cd "$ROOT" && cargo build "${flag[@]}" -p confab-signaling -p confab-loadtest)
fi
[[ -n $out ]] || out=$(mktemp -d -t cluster-voice.XXXXXX)
mkdir -p "$out"
# PostgreSQL runs as an unprivileged user who must reach the data directories.
data=$(mktemp -d -t cluster-voice-data.XXXXXX)
chmod 755 "$data"
export CONFAB_CLUSTER_DIR=$data/cluster
pids=()
cleanup() {
  # SIGTERM (a graceful stop), then SIGKILL for whatever is still up after 30 s: a stuck
  # shutdown must not hold the run.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 150); do
    local up=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && up=1; done
    ((up)) || break
    sleep 0.2
  done
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null && { echo "${0##*/}: pid $p did not stop on SIGTERM within 30 s; killed" >&2; kill -9 "$p" 2>/dev/null; }
    wait "$p" 2>/dev/null || true
  done
  "$ROOT/scripts/cluster.sh" stop >/dev/null 2>&1 || true
  cp -r "$CONFAB_CLUSTER_DIR/logs" "$out/cluster-logs" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One node on its own (role all, its own private PostgreSQL, no NATS).
single=$(free_port)
mkdir -p "$data/single"; chmod 755 "$data/single"
"$CONFAB_BIN" --bind "127.0.0.1:$single" --udp-port 0 --data-dir "$data/single" \
  --rate-limit-scale 1000 --node-name single --log-format json >"$out/single.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 240); do
  curl -fs -m 2 "http://127.0.0.1:$single/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fs -m 2 "http://127.0.0.1:$single/readyz" >/dev/null || { echo "cluster-voice: single node not ready (log in $out)" >&2; exit 1; }

# The cluster: 3 api nodes, 2 media nodes, nginx (not used here: the load tester spreads its
# gateways over the api nodes itself, as clients behind a round-robin balancer would be).
"$ROOT/scripts/cluster.sh" start --api 3 --media 2 --media-capacity "$capacity" -- --rate-limit-scale 1000 >/dev/null
# shellcheck disable=SC1091
. "$CONFAB_CLUSTER_DIR/cluster.env"
api_urls=("$API_1_URL" "$API_2_URL" "$API_3_URL")
media_urls="$MEDIA_1_URL,$MEDIA_2_URL"
ids_before=()
for u in "${api_urls[@]}"; do
  ids_before+=("$(curl -fs -m 10 "$u/metrics" | awk '/^confab_gateway_identifies_total[ {]/{s+=$NF} END {print s+0}')")
done

run() { # mode round
  local args=(--url "http://127.0.0.1:$single")
  if [[ $1 == cluster ]]; then
    args=(--url "${api_urls[0]}" --nodes "${api_urls[1]},${api_urls[2]}" --media-metrics "$media_urls")
  fi
  local killer=""
  if [[ $1 == cluster ]] && ((kill_after > 0)); then
    "$ROOT/scripts/cluster.sh" restart media-2 >/dev/null 2>&1 || true
    # The join phase comes first (its length depends on the machine), then the measured window:
    # the kill is timed from the tester's "N connected" line, at most 10 minutes after the start.
    (
      for _ in $(seq 1 3000); do
        grep -q 'connected, [0-9]* failed after' "$out/$1-$2.log" 2>/dev/null && break
        sleep 0.2
      done
      sleep "$kill_after"
      "$ROOT/scripts/cluster.sh" kill media-2 >/dev/null 2>&1
    ) &
    killer=$!
  fi
  local before=""
  if [[ $1 == cluster ]]; then before=$(media_counters); fi
  "$LOADTEST_BIN" voice "${args[@]}" --rooms 1 --speakers "$speakers" --listeners "$listeners" \
    --join-rate "$join_rate" --duration "$duration" --json "$out/$1-$2.json" >"$out/$1-$2.log" 2>&1 ||
    { echo "cluster-voice: $1 run $2 failed (log: $out/$1-$2.log)" >&2; tail -5 "$out/$1-$2.log" >&2; exit 1; }
  [[ -z $killer ]] || wait "$killer" 2>/dev/null || true
  if [[ $1 == cluster ]]; then
    # Where the channel lived: forwarded and relayed packets of each media node in this run
    # (a killed node reports nothing).
    paste <(echo "$before") <(media_counters) | awk -F'\t' -v r="$2" '{
      n = split($1, a, ","); m = split($2, b, ",")
      if (m < 2) { printf "media-%d round %s: down at the end\n", NR, r; next }
      if (n < 2) { a[1] = 0; a[2] = 0 }
      printf "media-%d round %s: forwarded %d packets, relayed %d\n", NR, r, b[1] - a[1], b[2] - a[2] }' >>"$out/media-nodes.txt"
  fi
  jq -r '[.voice.loss_percent, .voice.latency_ms.p99, .voice.join_ms.p50, .voice.join_ms.p99,
          (.server.sfu_cpu_us_per_forwarded_packet // "nan"), .voice.joined, .voice.failed,
          (.voice.reconnected_peers // 0), (.voice.reconnected_within_5s // 0),
          (.voice.reconnect_gap_ms.p50 // "nan"), (.voice.reconnect_gap_ms.max // "nan")] | @tsv' "$out/$1-$2.json"
}
media_counters() { # per media node: packets forwarded, relay datagrams sent (empty when down)
  local u
  for u in "$MEDIA_1_URL" "$MEDIA_2_URL"; do
    curl -fs -m 5 "$u/metrics" 2>/dev/null | awk '
      /^confab_sfu_packets_forwarded_total[ {]/ { f += $NF }
      /^confab_sfu_relay_packets_total\{.*direction="sent"/ { r += $NF }
      END { if (NR) printf "%d,%d\n", f, r; else print "" }' || true
  done
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
fmt() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }

echo "round mode loss_percent p99_ms join_p50_ms join_p99_ms us_per_forwarded_packet joined failed reconnected within_5s silence_p50_ms silence_max_ms"
for mode in single cluster; do for k in loss p99 jp50 jp99 usp; do : >"$out/$mode.$k"; done; done
bad=0
for r in $(seq 1 "$rounds"); do
  for mode in single cluster; do
    line=$(run "$mode" "$r")
    echo "$r $mode $(echo "$line" | tr '\t' ' ')"
    IFS=$'\t' read -r loss p99 jp50 jp99 usp joined failed _ _ _ _ <<<"$line"
    for k in loss p99 jp50 jp99 usp; do echo "${!k}" >>"$out/$mode.$k"; done
    if awk -v l="$loss" -v m="$max_loss" 'BEGIN { exit !(l > m) }' || ((failed > 0)); then
      echo "cluster-voice: $mode round $r: loss ${loss}%, $failed peer(s) failed to join" >&2
      bad=1
    fi
  done
done
[[ ! -s $out/media-nodes.txt ]] || cat "$out/media-nodes.txt"
echo "results in $out"
m() { fmt "$(median <"$out/$1.$2")"; }
echo "single_loss_percent=$(m single loss) cluster_loss_percent=$(m cluster loss)" \
  "single_p99_ms=$(m single p99) cluster_p99_ms=$(m cluster p99)" \
  "single_join_p50_ms=$(m single jp50) cluster_join_p50_ms=$(m cluster jp50)" \
  "single_join_p99_ms=$(m single jp99) cluster_join_p99_ms=$(m cluster jp99)" \
  "single_us_per_packet=$(m single usp) cluster_us_per_packet=$(m cluster usp)"
if ((smoke)); then
  ((bad == 0)) || { echo "cluster-voice smoke: loss over ${max_loss}% or failed joins" >&2; exit 1; }
  # Every api node signalled for some of the peers.
  for i in 0 1 2; do
    ids=$(curl -fs -m 10 "${api_urls[$i]}/metrics" | awk '/^confab_gateway_identifies_total[ {]/{s+=$NF} END {print s+0}')
    ((${ids%.*} > ${ids_before[$i]%.*})) ||
      { echo "cluster-voice smoke: ${api_urls[$i]} identified no peers" >&2; exit 1; }
  done
  # And the media nodes forwarded them.
  fwd=0
  for u in "$MEDIA_1_URL" "$MEDIA_2_URL"; do
    f=$(curl -fs -m 10 "$u/metrics" | awk '/^confab_sfu_packets_forwarded_total[ {]/{s+=$NF} END {print s+0}')
    fwd=$((fwd + ${f%.*}))
  done
  ((fwd > 0)) || { echo "cluster-voice smoke: the media nodes forwarded nothing" >&2; exit 1; }
fi
