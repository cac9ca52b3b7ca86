#!/usr/bin/env bash
# Voice under packet loss: Confab in a network namespace, the load tester's peers in this
# one, and a share of the UDP datagrams from Confab to the peers dropped at random on the
# way (the path towards the listeners; speakers receive each other through it too). For
# each loss rate two runs against the same server:
#   plain  peers without audio RTX (what browsers negotiate): nothing is resent, the final
#          loss is the network's;
#   rtx    peers negotiating RTX for Opus (`confab-loadtest --audio-rtx`): they NACK gaps
#          and Confab (`--sfu-audio-rtx true`) resends over RTX (RFC 4588).
# Reported per run: network loss (RTP sequence gaps as first seen by the peers), NACKs sent,
# packets recovered, final loss (frames never received), latency p99 (resends included)
# and server CPU per forwarded packet.
#
#   bench/voice-loss.sh                       # 2% and 5%, 1 room, 2 speakers, 10 listeners, 15 s
#   bench/voice-loss.sh --loss "2 5 10" --listeners 20 --duration 30 --out DIR
#   bench/voice-loss.sh --smoke               # 2%, rtx only, 5 listeners, 6 s, debug builds;
#                                             # fails unless final loss < 1% with drops seen
#   bench/voice-loss.sh --can-run             # exit 0 when network namespaces work here
#
# The drop: `tc qdisc ... netem loss P%` on the namespace's end of the veth pair when the
# kernel has netem (CONFIG_NET_SCH_NETEM); otherwise an nftables rule on this end's ingress
# (a `netdev` table bound to the veth, so nothing else on the machine is touched):
# `meta l4proto udp numgen random mod 1000 < P*10 drop`, independent random loss like
# netem's, UDP only. Not on the namespace's output hook: a drop there fails the sender's
# system call with EPERM, and `sendmmsg` (the fast path) then sends that datagram again
# with the next call, so most "dropped" packets would still arrive.
# Needs root; installs iproute2, nftables, jq and curl when missing.
#
# Env: CONFAB_BIN, LOADTEST_BIN (binaries to use).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

losses="2 5"
duration=15
speakers=2
listeners=10
modes="plain rtx"
out=""
smoke=0
profile=release
while (($#)); do
  case "$1" in
    --loss) losses=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --speakers) speakers=$2; shift 2 ;;
    --listeners) listeners=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --smoke) smoke=1; losses=2; listeners=5; duration=6; modes=rtx; profile=debug; shift ;;
    --can-run)
      probe="cvlprobe$$"
      if [[ $EUID -eq 0 ]] && command -v ip >/dev/null && ip netns add "$probe" 2>/dev/null; then
        ip netns del "$probe"; exit 0
      fi
      exit 1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "voice-loss: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done

die() { echo "voice-loss: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "needs root (it creates network namespaces)"

# --- dependencies -----------------------------------------------------------
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v tc >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  echo "voice-loss: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
CONFAB=${CONFAB_BIN:-$target_dir/$profile/confab}
LOADTEST=${LOADTEST_BIN:-$target_dir/$profile/confab-loadtest}
if [[ ! -x "$CONFAB" || ! -x "$LOADTEST" ]]; then
  echo "voice-loss: building confab and confab-loadtest ($profile)"
  flag=(); [[ $profile == release ]] && flag=(--release)
  (cd "$ROOT" && cargo build -q "${flag[@]}" -p confab-signaling -p confab-loadtest)
fi

# --- namespace, server, cleanup -----------------------------------------------
tag=$$
work=$(mktemp -d -t voice-loss.XXXXXX)
chmod 755 "$work" # Confab's PostgreSQL runs as `postgres` and must reach its data dir
[[ -n "$out" ]] || out=$(mktemp -d -t voice-loss-results.XXXXXX)
mkdir -p "$out"
ns="cvl$tag" hif="cvl$tag" nif="cvl${tag}n"
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  nft delete table netdev "$hif" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

oct=$((100 + tag % 100))
HOST_IP=10.$oct.78.1 C_IP=10.$oct.78.2
ip netns add "$ns"
ip link add "$hif" type veth peer name "$nif"
ip link set "$nif" netns "$ns"
ip addr add "$HOST_IP/30" dev "$hif"
ip link set "$hif" up
ip -n "$ns" addr add "$C_IP/30" dev "$nif"
ip -n "$ns" link set "$nif" up
ip -n "$ns" link set lo up

# How datagrams are dropped: netem if this kernel has it, else nftables.
dropper=nft
if ip netns exec "$ns" tc qdisc add dev "$nif" root netem loss 0% 2>/dev/null; then
  ip netns exec "$ns" tc qdisc del dev "$nif" root
  dropper=netem
fi
set_loss() { # PERCENT (0 = none)
  local p=$1
  if [[ $dropper == netem ]]; then
    ip netns exec "$ns" tc qdisc del dev "$nif" root 2>/dev/null || true
    if awk -v p="$p" 'BEGIN { exit !(p > 0) }'; then
      ip netns exec "$ns" tc qdisc add dev "$nif" root netem loss "$p%"
    fi
  else
    nft delete table netdev "$hif" 2>/dev/null || true
    local permille
    permille=$(awk -v p="$p" 'BEGIN { printf "%d", p * 10 + 0.5 }')
    ((permille > 0)) || return 0
    nft -f - <<EOF
table netdev $hif {
  chain in {
    type filter hook ingress device "$hif" priority 0; policy accept;
    meta l4proto udp numgen random mod 1000 < $permille drop
  }
}
EOF
  fi
}

mkdir -p "$work/confab"
chmod 755 "$work/confab"
ip netns exec "$ns" "$CONFAB" --bind "$C_IP:3000" --public-ip "$C_IP" --udp-port 3000 \
  --data-dir "$work/confab" --rate-limit-scale 1000 --sfu-audio-rtx true \
  >"$out/confab.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -fs -o /dev/null --max-time 1 "http://$C_IP:3000/readyz" && break
  kill -0 "$pid" 2>/dev/null || die "confab exited at start-up; see $out/confab.log"
  sleep 0.1
done
curl -fs -o /dev/null --max-time 1 "http://$C_IP:3000/readyz" || die "confab not ready after 60 s"
[[ $(cat /proc/$pid/comm) == confab* ]] || die "pid $pid is not confab"
where=$([[ $dropper == netem ]] && echo "netem on $nif (egress)" || echo "nftables on $hif (ingress)")
echo "voice-loss: confab pid $pid at $C_IP; drops by $where, towards the peers"

# --- runs ---------------------------------------------------------------------
run() { # LOSS MODE
  local p=$1 mode=$2 name="loss$1-$2" rc=0 extra=()
  if [[ $mode == rtx ]]; then extra=(--audio-rtx); fi
  set_loss "$p"
  echo "voice-loss: $p% loss, $mode, $speakers speakers + $listeners listeners, ${duration} s"
  "$LOADTEST" voice --url "http://$C_IP:3000" --sfu-pid "$pid" --rooms 1 --speakers "$speakers" \
    --listeners "$listeners" --duration "$duration" "${extra[@]}" --json "$out/$name.json" \
    >"$out/$name.txt" 2>"$out/$name.err" || rc=$?
  set_loss 0
  [[ $rc -eq 0 && -s "$out/$name.json" ]] || {
    tail -5 "$out/$name.err" >&2
    die "the run $name failed (exit $rc); see $out/$name.err"
  }
  kill -0 "$pid" 2>/dev/null || die "confab died during the run; see $out/confab.log"
}
start=$(date +%s)
for p in $losses; do
  for m in $modes; do run "$p" "$m"; done
done
elapsed=$(($(date +%s) - start))

# --- table ----------------------------------------------------------------------
num() { jq -r "$2 // empty | if type == \"number\" then (. * 100 | round / 100) else . end" "$1"; }
printf '\n%-6s | %-5s | %-7s | %-13s | %-6s | %-9s | %-12s | %-7s | %s\n' \
  drop_% mode joined network_loss_% nacks recovered final_loss_% p99_ms cpu_us/fwd_pkt
printf '%s\n' "-------+-------+---------+---------------+--------+-----------+--------------+---------+---------------"
for p in $losses; do
  for m in $modes; do
    f="$out/loss$p-$m.json"
    printf '%-6s | %-5s | %3s/%-3s | %-13s | %-6s | %-9s | %-12s | %-7s | %s\n' "$p" "$m" \
      "$(jq -r .voice.joined "$f")" "$((listeners + speakers))" \
      "$(num "$f" .voice.network_loss_percent)" "$(jq -r .voice.nacks_sent "$f")" \
      "$(jq -r .voice.packets_recovered "$f")" "$(num "$f" .voice.loss_percent)" \
      "$(num "$f" .voice.latency_ms.p99)" "$(num "$f" .server.sfu_cpu_us_per_forwarded_packet)"
  done
done
echo
echo "Runs took ${elapsed} s; results in $out."
if ((smoke)); then
  # Drops happened, every peer joined, and NACK/RTX recovered nearly all of them.
  f="$out/loss$losses-rtx.json"
  jq -e --argjson n $((listeners + speakers)) \
    '.voice.joined == $n and .voice.network_loss_percent > 0.5 and .voice.packets_recovered > 0
     and .voice.loss_percent < 1' "$f" >/dev/null ||
    die "smoke: $(jq -c '{joined: .voice.joined, network_loss: .voice.network_loss_percent,
      recovered: .voice.packets_recovered, final_loss: .voice.loss_percent, errors: .voice.errors}' "$f")"
  echo "voice-loss: smoke OK"
  jq -r '"network_loss_percent=\(.voice.network_loss_percent) final_loss_percent=\(.voice.loss_percent)"' "$f"
fi
