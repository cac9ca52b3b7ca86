#!/usr/bin/env bash
# Two builds of Confab side by side: the voice benchmark (1 room, 3 speakers, L listeners) and
# the chat benchmark (C clients over U users, R messages/s), each build in turn on a fresh data
# directory, for N rounds; then the medians of each figure per build and their ratio (B / A).
# For "within noise of before" checks of a change; run it on a quiet machine.
#
#   bench/side-by-side.sh --a DIR_A --b DIR_B               # 400 listeners, 1000 × 200 msg/s, 30 s, 3 rounds
#   bench/side-by-side.sh --a old/target/release --b target/release --listeners 200 --rounds 1
#
# DIR_A and DIR_B each hold `confab` and `confab-loadtest` (release builds; each build is
# measured with its own load tester, so a change to the tester shows too).
set -euo pipefail
a=""; b=""
listeners=400; clients=1000; users=200; rate=200; duration=30; rounds=3; out=""
while (($#)); do
  case "$1" in
    --a) a=$2; shift 2 ;;
    --b) b=$2; shift 2 ;;
    --listeners) listeners=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "side-by-side: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ -x $a/confab && -x $a/confab-loadtest && -x $b/confab && -x $b/confab-loadtest ]] ||
  { echo "side-by-side: --a and --b must hold confab and confab-loadtest" >&2; exit 64; }
command -v jq >/dev/null || { echo "side-by-side: needs jq" >&2; exit 1; }
[[ -n $out ]] || out=$(mktemp -d -t side-by-side.XXXXXX)
mkdir -p "$out"
server=""
data=""
stop() {
  [[ -n $server ]] && { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  [[ -n $data ]] && rm -rf "$data"
  server=""; data=""
}
trap stop EXIT INT TERM

start() { # dir name
  data=$(mktemp -d -t side-by-side-data.XXXXXX)
  chmod 755 "$data"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$1/confab" --bind "127.0.0.1:$port" --udp-port 0 --data-dir "$data" --rate-limit-scale 1000 \
    --log-format json >"$out/$2.server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 240); do
    curl -fs -m 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "side-by-side: $2 not ready" >&2; exit 1
}

load() { echo "$(cut -d' ' -f1 /proc/loadavg)"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "round build scenario figures (load average before → after)"
for r in $(seq 1 "$rounds"); do
  for build in a b; do
    dir=$a; [[ $build == b ]] && dir=$b
    name="$build-voice-$r"
    start "$dir" "$name"; l0=$(load)
    "$dir/confab-loadtest" voice --url "http://127.0.0.1:$port" --rooms 1 --speakers 3 \
      --listeners "$listeners" --duration "$duration" --json "$out/$name.json" >"$out/$name.log" 2>&1
    l1=$(load); stop
    jq -r --arg l "($l0 → $l1)" '"voice µs/fwd-pkt \(.server.sfu_cpu_us_per_forwarded_packet) loss% \(.voice.loss_percent) p99 \(.voice.latency_ms.p99) ms \($l)"' "$out/$name.json" | sed "s/^/$r $build /"
    jq -r '.server.sfu_cpu_us_per_forwarded_packet' "$out/$name.json" >>"$out/$build-voice-cpu.txt"
    jq -r '.voice.loss_percent' "$out/$name.json" >>"$out/$build-voice-loss.txt"
    name="$build-chat-$r"
    start "$dir" "$name"; l0=$(load)
    "$dir/confab-loadtest" chat --url "http://127.0.0.1:$port" --clients "$clients" --users "$users" \
      --channels 1 --rate "$rate" --duration "$duration" --json "$out/$name.json" >"$out/$name.log" 2>&1
    l1=$(load); stop
    jq -r --arg l "($l0 → $l1)" '"chat p99 \(.chat.deliver_ms.p99) ms lost \(.chat.lost) dup \(.chat.duplicated) µs/delivery \(.server.cpu_us_per_delivery) \($l)"' "$out/$name.json" | sed "s/^/$r $build /"
    jq -r '.chat.deliver_ms.p99' "$out/$name.json" >>"$out/$build-chat-p99.txt"
    jq -r '.server.cpu_us_per_delivery' "$out/$name.json" >>"$out/$build-chat-cpu.txt"
  done
done
echo "results in $out"
for f in voice-cpu voice-loss chat-p99 chat-cpu; do
  ma=$(median <"$out/a-$f.txt"); mb=$(median <"$out/b-$f.txt")
  echo "$f: a=$ma b=$mb ratio=$(awk -v x="$mb" -v y="$ma" 'BEGIN{ if (y == 0) print "n/a"; else printf "%.2f", x/y }')"
done
