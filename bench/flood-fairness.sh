#!/usr/bin/env bash
# Floods and fairness: what one flooding member costs everyone else. Runs the chat benchmark
# (C gateway clients in one server, R messages/s) alternately without and with F flooders —
# members sending messages, typing and reactions as fast as the server answers and gateway
# frames past their budget — against one release `confab`, and prints the median send→deliver
# p99 of the ordinary clients in each mode and their ratio.
#
#   bench/flood-fairness.sh                            # 100 clients, 50 msg/s, 4 flooders, 20 s, 3 rounds
#   bench/flood-fairness.sh --clients 200 --flooders 8 --rounds 3 --out DIR
#
# The server runs with --rate-limit-scale 10: enough to register the clients from one
# address, while a flooder is still refused almost everything (10 × the message bucket is
# 20 messages/s against thousands attempted).
#
# Env: CONFAB_BIN, LOADTEST_BIN (default: target/release/…; built when missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
clients=100
rate=50
flooders=4
duration=20
rounds=3
out=""
while (($#)); do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --flooders) flooders=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "flood-fairness: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
command -v jq >/dev/null || { echo "flood-fairness: needs jq" >&2; exit 1; }
CONFAB_BIN=${CONFAB_BIN:-$ROOT/target/release/confab}
LOADTEST_BIN=${LOADTEST_BIN:-$ROOT/target/release/confab-loadtest}
if [[ ! -x $CONFAB_BIN || ! -x $LOADTEST_BIN ]]; then
  (cd "$ROOT" && cargo build --release -p confab-signaling -p confab-loadtest)
fi
[[ -n $out ]] || out=$(mktemp -d -t flood-fairness.XXXXXX)
mkdir -p "$out"
data=$(mktemp -d -t flood-fairness-data.XXXXXX)
chmod 755 "$data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$CONFAB_BIN" --bind "127.0.0.1:$port" --udp-port 0 --data-dir "$data" --rate-limit-scale 10 \
  --log-format json >"$out/confab.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 120); do
  curl -fs -m 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fs -m 2 "http://127.0.0.1:$port/readyz" >/dev/null || { echo "flood-fairness: server not ready" >&2; exit 1; }

run() { # mode round
  local f=0; [[ $1 == flood ]] && f=$flooders
  "$LOADTEST_BIN" chat --url "http://127.0.0.1:$port" --clients "$clients" --rate "$rate" \
    --duration "$duration" --flooders "$f" --json "$out/$1-$2.json" >"$out/$1-$2.log" 2>&1
  jq -r '[.chat.deliver_ms.p99, .chat.lost, .chat.duplicated, (.chat.flood.requests_per_second // 0), ((.chat.flood.statuses["429"] // 0) / ((.chat.flood.requests // 1) | if . == 0 then 1 else . end) * 100)] | @tsv' "$out/$1-$2.json"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "round mode p99_ms lost duplicated flood_req_per_s flood_429_percent"
: >"$out/base.txt"; : >"$out/flood.txt"
for r in $(seq 1 "$rounds"); do
  for mode in base flood; do
    line=$(run "$mode" "$r")
    echo "$r $mode $line"
    echo "$line" | cut -f1 >>"$out/$mode.txt"
  done
done
b=$(median <"$out/base.txt"); f=$(median <"$out/flood.txt")
echo "median p99 without flood: ${b} ms; with $flooders flooders: ${f} ms; ratio $(awk -v a="$f" -v b="$b" 'BEGIN{printf "%.2f", a/b}')"
echo "results in $out"
