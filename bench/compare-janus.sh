#!/usr/bin/env bash
# Side by side with Janus: the voice benchmark (scenario 1: 1 room, 3 speakers,
# N listeners, 30 s steady state) against a Janus VideoRoom and against Confab,
# on this machine, in one run, measured the same way.
#
#   bench/compare-janus.sh                      # listeners 400 and 800, 30 s each
#   bench/compare-janus.sh --listeners "100 400" --duration 20 --out DIR
#   bench/compare-janus.sh --smoke              # 5 listeners, 5 s, debug builds: a quick check
#   bench/compare-janus.sh --can-run            # exit 0 when network namespaces work here
#
# Needs root (network namespaces). Installs Debian's `janus` (and `jq`) when missing,
# builds the release binaries when missing. Janus never offers a loopback ICE
# candidate, so each server runs in a network namespace of its own, reached over a
# veth pair on a private /30; the load tester stays in this namespace. Janus gets a
# temporary configuration (VideoRoom and the HTTP transport only, event_loops = 2);
# Confab a fresh data directory and --rate-limit-scale 1000. Both servers' CPU comes
# from /proc/<pid>/stat over the steady state, divided by the RTP packets the
# simulated peers received in it. Everything started here is stopped on exit.
#
# Env: CONFAB_BIN, LOADTEST_BIN (binaries to use), JANUS_BIN.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

listeners="400 800"
duration=30
speakers=3
out=""
smoke=0
profile=release
while (($#)); do
  case "$1" in
    --listeners) listeners=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --speakers) speakers=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --smoke) smoke=1; listeners=5; duration=5; profile=debug; shift ;;
    --can-run)
      # Network namespaces need root and iproute2.
      probe="cjprobe$$"
      if [[ $EUID -eq 0 ]] && command -v ip >/dev/null && ip netns add "$probe" 2>/dev/null; then
        ip netns del "$probe"; exit 0
      fi
      exit 1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "compare-janus: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done

die() { echo "compare-janus: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "needs root (it creates network namespaces)"
command -v ip >/dev/null || die "needs iproute2 (ip)"

# --- dependencies -----------------------------------------------------------
need=()
command -v "${JANUS_BIN:-janus}" >/dev/null || need+=(janus)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  echo "compare-janus: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi
JANUS=$(command -v "${JANUS_BIN:-janus}")
janus_lib=$(dirname "$(dpkg -L janus 2>/dev/null | grep -m1 '/janus/plugins/libjanus_videoroom.so$')" 2>/dev/null || true)
[[ -n "$janus_lib" && -d "$janus_lib" ]] || janus_lib=$(ls -d /usr/lib/*/janus/plugins 2>/dev/null | head -1)
[[ -f "$janus_lib/libjanus_videoroom.so" ]] || die "cannot find Janus's VideoRoom plugin"
janus_lib=$(dirname "$janus_lib")

target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
CONFAB=${CONFAB_BIN:-$target_dir/$profile/confab}
LOADTEST=${LOADTEST_BIN:-$target_dir/$profile/confab-loadtest}
if [[ ! -x "$CONFAB" || ! -x "$LOADTEST" ]]; then
  echo "compare-janus: building confab and confab-loadtest ($profile)"
  flag=(); [[ $profile == release ]] && flag=(--release)
  (cd "$ROOT" && cargo build -q "${flag[@]}" -p confab-signaling -p confab-loadtest)
fi

# --- namespaces, servers, cleanup -------------------------------------------
tag=$$
work=$(mktemp -d -t compare-janus.XXXXXX)
chmod 755 "$work" # Confab's PostgreSQL runs as `postgres` and must reach its data dir
# Results (JSON, tester output, server logs) outlive the run.
[[ -n "$out" ]] || out=$(mktemp -d -t compare-janus-results.XXXXXX)
mkdir -p "$out"
pids=()
namespaces=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# netns NAME HOST_IF HOST_IP NS_IP: a namespace reached over a veth pair (/30).
netns() {
  local ns=$1 hif=$2 hip=$3 nip=$4
  ip netns add "$ns"
  namespaces+=("$ns")
  ip link add "$hif" type veth peer name "${hif}n"
  ip link set "${hif}n" netns "$ns"
  ip addr add "$hip/30" dev "$hif"
  ip link set "$hif" up
  ip -n "$ns" addr add "$nip/30" dev "${hif}n"
  ip -n "$ns" link set "${hif}n" up
  ip -n "$ns" link set lo up
}
# Private /30s, picked per run so that parallel runs do not collide.
oct=$((100 + tag % 100))
J_HOST=10.$oct.77.1 J_IP=10.$oct.77.2 C_HOST=10.$oct.77.5 C_IP=10.$oct.77.6
netns "cjj$tag" "cjj$tag" "$J_HOST" "$J_IP"
netns "cjc$tag" "cjc$tag" "$C_HOST" "$C_IP"

# Janus: our own configuration folder; nothing read from or written to /etc/janus.
jcfg="$work/janus"
mkdir -p "$jcfg/none"
disable_list() { # every .so in $1 except $2
  (cd "$1" && ls ./*.so 2>/dev/null | sed 's|^\./||' | grep -vx "$2" | paste -sd, -)
}
cat >"$jcfg/janus.jcfg" <<EOF
general: {
	configs_folder = "$jcfg"
	plugins_folder = "$janus_lib/plugins"
	transports_folder = "$janus_lib/transports"
	events_folder = "$jcfg/none"
	loggers_folder = "$jcfg/none"
	log_to_stdout = true
	debug_level = 3
	interface = "$J_IP"
	# One thread per handle is Janus's default and costs about twice the CPU per
	# packet: a fixed pool is the fair configuration.
	event_loops = 2
}
media: {
	rtp_port_range = "20000-40000"
}
nat: {
	nice_debug = false
	ice_enforce_list = "$J_IP"
}
plugins: {
	disable = "$(disable_list "$janus_lib/plugins" libjanus_videoroom.so)"
}
transports: {
	disable = "$(disable_list "$janus_lib/transports" libjanus_http.so)"
}
events: {
	broadcast = false
}
EOF
cat >"$jcfg/janus.plugin.videoroom.jcfg" <<EOF
general: {
}
EOF
cat >"$jcfg/janus.transport.http.jcfg" <<EOF
general: {
	json = "plain"
	base_path = "/janus"
	http = true
	port = 8088
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
EOF
# `ip netns exec` execs the program, so $! is the server's own pid.
ip netns exec "cjj$tag" "$JANUS" -C "$jcfg/janus.jcfg" -F "$jcfg" >"$out/janus.log" 2>&1 &
janus_pid=$!
pids+=("$janus_pid")

mkdir -p "$work/confab"
chmod 755 "$work/confab"
ip netns exec "cjc$tag" "$CONFAB" --bind "$C_IP:3000" --public-ip "$C_IP" --udp-port 3000 \
  --data-dir "$work/confab" --rate-limit-scale 1000 >"$out/confab.log" 2>&1 &
confab_pid=$!
pids+=("$confab_pid")

wait_http() { # URL PID NAME
  for _ in $(seq 1 600); do
    curl -fs -o /dev/null --max-time 1 "$1" && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited at start-up; see $out/$3.log"
    sleep 0.1
  done
  die "$3 not ready after 60 s; see $out/$3.log"
}
wait_http "http://$J_IP:8088/janus/info" "$janus_pid" janus
wait_http "http://$C_IP:3000/readyz" "$confab_pid" confab
[[ $(cat /proc/$janus_pid/comm) == janus* ]] || die "pid $janus_pid is not janus"
[[ $(cat /proc/$confab_pid/comm) == confab* ]] || die "pid $confab_pid is not confab"
echo "compare-janus: $("$JANUS" --version 2>/dev/null | head -1) pid $janus_pid at $J_IP; confab pid $confab_pid at $C_IP"

# --- runs ---------------------------------------------------------------------
run() { # TARGET N
  local t=$1 n=$2 url pid
  if [[ $t == janus ]]; then url="http://$J_IP:8088/janus"; pid=$janus_pid
  else url="http://$C_IP:3000"; pid=$confab_pid; fi
  echo "compare-janus: $t, $speakers speakers + $n listeners, ${duration} s steady state"
  local rc=0
  "$LOADTEST" voice --target "$t" --url "$url" --sfu-pid "$pid" --rooms 1 --speakers "$speakers" \
    --listeners "$n" --duration "$duration" --json "$out/$t-$n.json" \
    >"$out/$t-$n.txt" 2>"$out/$t-$n.err" || rc=$?
  [[ $rc -eq 0 && -s "$out/$t-$n.json" ]] || {
    tail -5 "$out/$t-$n.err" >&2
    die "the $t run with $n listeners failed (exit $rc); see $out/$t-$n.err"
  }
  kill -0 "$pid" 2>/dev/null || die "$t died during the run; see $out/$t.log"
}
start=$(date +%s)
for n in $listeners; do
  # Back to back, so both see the same machine load.
  run janus "$n"
  run confab "$n"
done
elapsed=$(($(date +%s) - start))

# --- table ----------------------------------------------------------------------
num() { jq -r "$2 // empty | if type == \"number\" then (. * 100 | round / 100) else . end" "$1"; }
printf '\n%-9s | %-6s | %-11s | %-7s | %-9s | %-17s | %s\n' \
  listeners server joined loss_% p99_ms cpu_us_per_packet "Janus/Confab"
printf '%s\n' "----------+--------+-------------+---------+-----------+-------------------+-------------"
first_j="" first_c=""
best_j=0 best_c=0
for n in $listeners; do
  for t in janus confab; do
    f="$out/$t-$n.json"
    cpu=$(num "$f" .server.sfu_cpu_us_per_received_packet)
    loss=$(num "$f" .voice.loss_percent)
    ratio=""
    if [[ $t == confab ]]; then
      jc=$(jq -r '.server.sfu_cpu_us_per_received_packet // 0' "$out/janus-$n.json")
      cc=$(jq -r '.server.sfu_cpu_us_per_received_packet // 0' "$f")
      ratio=$(awk -v a="$jc" -v b="$cc" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    fi
    printf '%-9s | %-6s | %5s/%-5s | %-7s | %-9s | %-17s | %s\n' "$n" "$t" \
      "$(jq -r .voice.joined "$f")" "$((n + speakers))" "$loss" \
      "$(num "$f" .voice.latency_ms.p99)" "$cpu" "$ratio"
    if awk -v l="$loss" 'BEGIN { exit !(l < 1) }'; then
      if [[ $t == janus ]]; then ((n > best_j)) && best_j=$n; else ((n > best_c)) && best_c=$n; fi
    fi
  done
  [[ -n "$first_j" ]] || {
    first_j=$(jq -r '.server.sfu_cpu_us_per_received_packet // empty' "$out/janus-$n.json")
    first_c=$(jq -r '.server.sfu_cpu_us_per_received_packet // empty' "$out/confab-$n.json")
  }
done
echo
echo "CPU: server process utime+stime over the steady state / RTP packets the peers received in it."
echo "Most listeners with loss < 1% among those tried: Janus $best_j, Confab $best_c."
echo "Runs took ${elapsed} s; results in $out. Figures below: the first listener count ($(set -- $listeners; echo "$1"))."
[[ -n "$first_j" && -n "$first_c" ]] || die "a run measured no server CPU per packet"
if ((smoke)); then
  # The quick check: every peer joined on both servers and audio flowed.
  for t in janus confab; do
    f="$out/$t-$listeners.json"
    jq -e --argjson n $((listeners + speakers)) \
      '.voice.joined == $n and .voice.packets_received > 0 and .voice.loss_percent < 5' "$f" >/dev/null ||
      die "smoke: $t: $(jq -c '{joined: .voice.joined, received: .voice.packets_received, loss: .voice.loss_percent, errors: .voice.errors}' "$f")"
  done
  echo "compare-janus: smoke OK (both servers: all peers joined, audio received)"
fi
awk -v a="$first_j" -v b="$first_c" \
  'BEGIN { printf "janus_us_per_packet=%.2f confab_us_per_packet=%.2f ratio=%.2f\n", a, b, (b > 0 ? a / b : 0) }'
