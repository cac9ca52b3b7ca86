#!/usr/bin/env bash
# Chat across a cluster: the chat benchmark (C gateway clients in one channel, R messages/s)
# alternately against one node and against N nodes on one PostgreSQL and a private NATS, with
# clients and sends spread round-robin over the nodes (`confab-loadtest --nodes`), so most
# deliveries cross nodes. Prints each run's send→deliver p99, lost and duplicated, then the
# medians side by side.
#
#   bench/cluster-chat.sh                          # 1000 clients, 200 msg/s, 3 nodes, 30 s, 3 rounds
#   bench/cluster-chat.sh --clients 200 --rate 50 --nodes 3 --rounds 1 --out DIR
#   bench/cluster-chat.sh --smoke                  # debug builds, 60 clients, 20 msg/s, 5 s, 1 round
#
# Last line: `single_p99_ms=A cluster_p99_ms=B lost=L duplicated=D` (medians; lost and duplicated
# summed over every cluster run). --smoke fails unless every message reached every client once
# and every node served clients and received other nodes' events.
#
# Needs nats-server (Debian package), jq and curl. Env: CONFAB_BIN, LOADTEST_BIN (default:
# target/release/…, or target/debug/… with --smoke; built when missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
clients=1000
users=200
rate=200
nodes=3
duration=30
rounds=3
out=""
profile=release
smoke=0
while (($#)); do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --smoke) smoke=1; profile=debug; clients=60; users=20; rate=20; duration=5; rounds=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "cluster-chat: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
for tool in jq curl nats-server; do
  command -v "$tool" >/dev/null || { echo "cluster-chat: needs $tool" >&2; exit 1; }
done
CONFAB_BIN=${CONFAB_BIN:-$ROOT/target/$profile/confab}
LOADTEST_BIN=${LOADTEST_BIN:-$ROOT/target/$profile/confab-loadtest}
if [[ ! -x $CONFAB_BIN || ! -x $LOADTEST_BIN ]]; then
  flag=(); [[ $profile == release ]] && flag=(--release)
  (cd "$ROOT" && cargo build "${flag[@]}" -p confab-signaling -p confab-loadtest)
fi
[[ -n $out ]] || out=$(mktemp -d -t cluster-chat.XXXXXX)
mkdir -p "$out"
# PostgreSQL runs as an unprivileged user who must reach the data directories.
data=$(mktemp -d -t cluster-chat-data.XXXXXX)
chmod 755 "$data"
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
  rm -rf "$data"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # port
  for _ in $(seq 1 240); do
    curl -fs -m 2 "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "cluster-chat: node on port $1 not ready (logs in $out)" >&2
  exit 1
}
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_node() { # name port extra-args...
  local name=$1 port=$2; shift 2
  mkdir -p "$data/$name"; chmod 755 "$data/$name"
  "$CONFAB_BIN" --bind "127.0.0.1:$port" --udp-port 0 --data-dir "$data/$name" \
    --rate-limit-scale 1000 --jwt-secret "$secret" --node-name "$name" --log-format json \
    "$@" >"$out/$name.log" 2>&1 &
  pids+=($!)
  wait_ready "$port"
}

# One node on its own database, and the cluster: node 1 provisions the shared database
# (its private PostgreSQL, reached by the others through its socket) and NATS joins them.
single=$(free_port)
start_node single "$single"
nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" >"$out/nats.log" 2>&1 &
pids+=($!)
urls=()
for i in $(seq 1 "$nodes"); do
  port=$(free_port)
  if ((i == 1)); then
    start_node node1 "$port" --nats-url "nats://127.0.0.1:$nats_port"
  else
    start_node "node$i" "$port" --nats-url "nats://127.0.0.1:$nats_port" \
      --database-url "postgres://confab@localhost/confab?host=$data/node1/pg/run"
  fi
  urls+=("http://127.0.0.1:$port")
done
others=$(IFS=,; echo "${urls[*]:1}")

run() { # mode round
  local args=(--url "http://127.0.0.1:$single")
  [[ $1 == cluster ]] && args=(--url "${urls[0]}" --nodes "$others")
  "$LOADTEST_BIN" chat "${args[@]}" --clients "$clients" --users "$users" --rate "$rate" \
    --duration "$duration" --json "$out/$1-$2.json" >"$out/$1-$2.log" 2>&1
  jq -r '[.chat.deliver_ms.p99, .chat.lost, .chat.duplicated, .chat.deliveries] | @tsv' "$out/$1-$2.json"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "round mode p99_ms lost duplicated deliveries"
: >"$out/single.txt"; : >"$out/cluster.txt"
lost=0; dup=0
for r in $(seq 1 "$rounds"); do
  for mode in single cluster; do
    line=$(run "$mode" "$r")
    echo "$r $mode $line"
    echo "$line" | cut -f1 >>"$out/$mode.txt"
    if [[ $mode == cluster ]]; then
      lost=$((lost + $(echo "$line" | cut -f2)))
      dup=$((dup + $(echo "$line" | cut -f3)))
    fi
  done
done
s=$(median <"$out/single.txt"); c=$(median <"$out/cluster.txt")
echo "results in $out"
echo "single_p99_ms=$s cluster_p99_ms=$c lost=$lost duplicated=$dup"
if ((smoke)); then
  ((lost == 0 && dup == 0)) || { echo "cluster-chat smoke: lost $lost, duplicated $dup" >&2; exit 1; }
  delivered=$(jq -r '.chat.deliveries' "$out/cluster-1.json")
  ((delivered > 0)) || { echo "cluster-chat smoke: nothing delivered" >&2; exit 1; }
  # Every node served clients and received the others' events: deliveries crossed nodes.
  for u in "${urls[@]}"; do
    m=$(curl -fs -m 10 "$u/metrics")
    ids=$(echo "$m" | awk '/^confab_gateway_identifies_total[ {]/{print $NF}')
    recv=$(echo "$m" | awk '/^confab_bus_received_total[ {]/{print $NF}')
    ((${ids%.*} > 0 && ${recv%.*} > 0)) ||
      { echo "cluster-chat smoke: $u identified ${ids:-0} clients, received ${recv:-0} bus messages" >&2; exit 1; }
  done
fi
