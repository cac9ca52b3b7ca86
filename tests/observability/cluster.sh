#!/usr/bin/env bash
# Checks the cluster monitoring against two real nodes: a private `nats-server` (free port), node A
# (its own private PostgreSQL under a temp data dir) and node B (A's PostgreSQL, through its Unix
# socket), both with --nats-url and a --node-name, and a Prometheus of its own (1 s scrapes and
# rule evaluation, loading grafana/alerts.yml) scraping both. A user connected to B's gateway gets
# the messages posted through A, so B times cross-node deliveries; then
#
#   - every query of the node dashboard's Cluster row returns data, the cross-node delivery
#     latency (a panel that stays empty on one node, so validate.sh cannot require it) included;
#     per node: both up and connected to NATS, A publishes, B receives and holds the session;
#   - node B is stopped: ConfabNodeDown fires for B alone (after its `for: 1m`), and the Cluster
#     row counts one node up, one down.
#
# Usage (from the repository root):  bash tests/observability/cluster.sh
# Needs nats-server, prometheus and python3 (scripts/install-deps.sh --test installs them; run
# validate.sh first for promtool/prometheus). CONFAB_BIN as in validate.sh; KEEP_TMP=1 keeps logs.
# Takes about two minutes. Exit status 0 only if every check passed.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
OBS="python3 $ROOT/tests/observability/obs.py"

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $*"; }
section() { echo; echo "== $*"; }

TMP=$(mktemp -d -t confab-obs-cluster.XXXXXX)
PIDS=() # started processes, stopped in reverse order

stop_pid() { # pid
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.2
    done
    echo "note: pid $pid did not stop within 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

cleanup() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    PIDS=()
    if [ -n "${TMP:-}" ] && [ -d "$TMP" ]; then
        if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
    fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

run_obs() {
    local out="$TMP/obs.$RANDOM.out" rc p f
    $OBS "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    p=$(grep -c '^PASS' "$out")
    f=$(grep -c '^FAIL' "$out")
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then fail "obs.py $1 exited with status $rc"; fi
    return 0
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # url seconds
    local url=$1 secs=$2
    for _ in $(seq 1 $((secs * 2))); do
        curl -sf -o /dev/null --max-time 2 "$url" && return 0
        sleep 0.5
    done
    return 1
}

finish() {
    cleanup
    echo
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
    exit $?
}

section "tools"
for tool in nats-server prometheus python3 curl; do
    if command -v "$tool" >/dev/null 2>&1; then pass "$tool available"; else fail "$tool not available"; fi
done
[ "$FAILED" -eq 0 ] || finish
CONFAB_BIN=${CONFAB_BIN:-$ROOT/target/debug/confab}
if [ ! -x "$CONFAB_BIN" ]; then
    echo "building the debug binary (cargo build -p confab-signaling)…"
    cargo build -q -p confab-signaling || true
fi
[ -x "$CONFAB_BIN" ] || { fail "no Confab binary at $CONFAB_BIN"; finish; }

section "two nodes on one NATS and one PostgreSQL"
NATS_PORT=$(free_port)
nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$TMP/nats.log" 2>&1 &
PIDS+=($!)
NATS_URL="nats://127.0.0.1:$NATS_PORT"
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
NODE_A=obs-a
NODE_B=obs-b

# The private PostgreSQL runs as the postgres user and must traverse the data directory.
DATA_A=$(mktemp -d "$TMP/a.XXXXXX")
DATA_B=$(mktemp -d "$TMP/b.XXXXXX")
chmod 755 "$TMP" "$DATA_A" "$DATA_B"
PORT_A=$(free_port)
"$CONFAB_BIN" --bind "127.0.0.1:$PORT_A" --udp-port 0 --data-dir "$DATA_A" --jwt-secret "$SECRET" \
    --nats-url "$NATS_URL" --node-name "$NODE_A" >"$TMP/confab-a.log" 2>&1 &
PIDS+=($!)
URL_A="http://127.0.0.1:$PORT_A"
if wait_http "$URL_A/readyz" 120; then pass "node $NODE_A ready on $URL_A"; else
    fail "node $NODE_A not ready"; tail -30 "$TMP/confab-a.log"; finish
fi
PORT_B=$(free_port)
"$CONFAB_BIN" --bind "127.0.0.1:$PORT_B" --udp-port 0 --data-dir "$DATA_B" --jwt-secret "$SECRET" \
    --database-url "postgres://confab@localhost/confab?host=$DATA_A/pg/run" \
    --nats-url "$NATS_URL" --node-name "$NODE_B" >"$TMP/confab-b.log" 2>&1 &
PID_B=$!
PIDS+=($PID_B)
URL_B="http://127.0.0.1:$PORT_B"
if wait_http "$URL_B/readyz" 120; then pass "node $NODE_B ready on $URL_B"; else
    fail "node $NODE_B not ready"; tail -30 "$TMP/confab-b.log"; finish
fi

PROM_PORT=$(free_port)
PROM_URL="http://127.0.0.1:$PROM_PORT"
mkdir -p "$TMP/prometheus"
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/grafana/alerts.yml
scrape_configs:
  - job_name: confab
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$PORT_A", "127.0.0.1:$PORT_B"]
EOF
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
if wait_http "$PROM_URL/-/ready" 60; then pass "prometheus ready on $PROM_URL"; else
    fail "prometheus not ready"; tail -30 "$TMP/prometheus.log"; finish
fi

section "traffic across nodes"
run_obs cluster-traffic "$URL_A" "$URL_B"
sleep 3 # a few more scrapes after the last delivery

section "the Cluster row with two nodes"
run_obs cluster-evaluate "$ROOT" "$PROM_URL" "$NODE_A" "$NODE_B"

section "node $NODE_B stops"
stop_pid "$PID_B"
run_obs node-down "$ROOT" "$PROM_URL" "$NODE_B"
finish
