#!/usr/bin/env bash
# Validates Confab's observability files against real tools and a live server:
#
#   1. installs Debian's `prometheus` package if `prometheus`/`promtool` are missing;
#   2. static checks: dashboard structure, every metric name in dashboards and rules is in
#      docs/metrics.md, alert annotations; `promtool check config`, `promtool check rules`,
#      `promtool test rules grafana/alerts_test.yml`;
#   3. starts a Confab debug binary (free port, ephemeral UDP port, fresh data dir) and a
#      Prometheus of its own (temp storage, free port, 1 s scrapes and rule evaluation, loading
#      grafana/alerts.yml), makes a little REST and gateway traffic, runs the load tester's
#      smoke-sized mixed scenario (voice peers and chat clients; Confab started with
#      --rate-limit-scale 1000), waits for scrapes, then evaluates every PromQL expression of the
#      three dashboards through /api/v1/query and REQUIRES data (a non-NaN sample) from each — except
#      panels marked cluster-only (cross-node delivery latency: empty on one node), whose series
#      must be exported instead — and checks the core series, that every confab_*/process_* series
#      carries the node label Confab was started with (--node-name), the recording rules and that
#      no alert fires on a healthy server. tests/observability/cluster.sh checks the cluster-only
#      panels with two nodes.
#
# Usage (from the repository root):  bash tests/observability/validate.sh
# Environment: CONFAB_BIN (default target/debug/confab; built with `cargo build -p
# confab-signaling` when missing), LOADTEST_BIN (default target/debug/confab-loadtest; built with
# `cargo build -p confab-loadtest` when missing), KEEP_TMP=1 keeps the temp directory (logs, TSDB).
# Exit status 0 only if every check passed; the last line is `N passed, M failed`.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
OBS="python3 $ROOT/tests/observability/obs.py"

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $*"; }
section() { echo; echo "== $*"; }

TMP=$(mktemp -d -t confab-obs.XXXXXX)
CONFAB_PID=""
PROM_PID=""

stop_pid() { # pid name
    local pid=$1 name=$2
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.2
    done
    echo "note: $name (pid $pid) did not stop within 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

cleanup() {
    stop_pid "$PROM_PID" prometheus
    PROM_PID=""
    stop_pid "$CONFAB_PID" confab
    CONFAB_PID=""
    if [ -n "${TMP:-}" ] && [ -d "$TMP" ]; then
        if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
    fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# Runs an obs.py subcommand, echoing its output and adding its PASS/FAIL lines to the totals.
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

wait_http() { # url seconds → 0 when it answered 200
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

# --------------------------------------------------------------------------------------------
section "tools"
apt_install() {
    local pkgs=("$@") sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    # The package's own service (systemd or init script) is irrelevant here: we run the
    # binary ourselves on a free port with temp storage. Keep installs from starting daemons.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" >"$TMP/apt.log" 2>&1 ||
        { $sudo apt-get update -q >>"$TMP/apt.log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" >>"$TMP/apt.log" 2>&1; }
}
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    echo "installing Debian's prometheus package (ships promtool)…"
    apt_install prometheus || tail -20 "$TMP/apt.log"
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
    apt_install python3-yaml || tail -20 "$TMP/apt.log"
fi
for tool in prometheus promtool python3 curl; do
    if command -v "$tool" >/dev/null 2>&1; then pass "$tool available"; else fail "$tool not available"; fi
done
command -v promtool >/dev/null 2>&1 && promtool --version 2>&1 | head -1
python3 -c 'import yaml' 2>/dev/null && pass "python3 yaml available" || fail "python3 yaml not available"
command -v promtool >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 || finish

# --------------------------------------------------------------------------------------------
section "static checks (dashboards, metric names, annotations)"
run_obs static "$ROOT"

section "promtool"
if out=$(promtool check config grafana/prometheus.yml 2>&1); then
    pass "promtool check config grafana/prometheus.yml"
else
    echo "$out"; fail "promtool check config grafana/prometheus.yml"
fi
if out=$(promtool check rules grafana/alerts.yml 2>&1); then
    pass "promtool check rules grafana/alerts.yml ($(echo "$out" | grep -o '[0-9]* rules found' | head -1))"
else
    echo "$out"; fail "promtool check rules grafana/alerts.yml"
fi
if out=$(promtool test rules grafana/alerts_test.yml 2>&1); then
    pass "promtool test rules grafana/alerts_test.yml"
else
    echo "$out"; fail "promtool test rules grafana/alerts_test.yml"
fi

# --------------------------------------------------------------------------------------------
section "live: Confab + Prometheus"
CONFAB_BIN=${CONFAB_BIN:-$ROOT/target/debug/confab}
if [ ! -x "$CONFAB_BIN" ]; then
    echo "building the debug binary (cargo build -p confab-signaling)…"
    (cd "$ROOT" && cargo build -q -p confab-signaling) || true
fi
if [ ! -x "$CONFAB_BIN" ]; then
    fail "no Confab binary at $CONFAB_BIN"
    finish
fi
echo "confab binary: $CONFAB_BIN ($(date -r "$CONFAB_BIN" '+%F %T'))"

# The private PostgreSQL runs as the postgres user and must traverse the data directory.
DATA=$(mktemp -d "$TMP/data.XXXXXX")
chmod 755 "$TMP" "$DATA"
HTTP_PORT=$(free_port)
NODE_NAME=obs-node-1
# The default audio fast path: the RTT panel's data comes from the receiver reports it reads.
"$CONFAB_BIN" --bind "127.0.0.1:$HTTP_PORT" --udp-port 0 --data-dir "$DATA" --rate-limit-scale 1000 \
    --node-name "$NODE_NAME" >"$TMP/confab.log" 2>&1 &
CONFAB_PID=$!
CONFAB_URL="http://127.0.0.1:$HTTP_PORT"
if wait_http "$CONFAB_URL/readyz" 120; then
    pass "confab ready on $CONFAB_URL (pid $CONFAB_PID)"
else
    fail "confab did not become ready on $CONFAB_URL within 120 s"
    tail -30 "$TMP/confab.log"
    finish
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
      - targets: ["127.0.0.1:$HTTP_PORT"]
EOF
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn \
    >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
if wait_http "$PROM_URL/-/ready" 60; then
    pass "prometheus ready on $PROM_URL (pid $PROM_PID)"
else
    fail "prometheus did not become ready on $PROM_URL"
    tail -30 "$TMP/prometheus.log"
    finish
fi

section "traffic"
run_obs traffic "$CONFAB_URL"

section "load: confab-loadtest mixed (smoke size)"
LOADTEST_BIN=${LOADTEST_BIN:-$ROOT/target/debug/confab-loadtest}
if [ ! -x "$LOADTEST_BIN" ] || ! "$LOADTEST_BIN" --version >/dev/null 2>&1; then
    echo "building the load tester (cargo build -p confab-loadtest)…"
    (cd "$ROOT" && cargo build -q -p confab-loadtest) || true
fi
if [ -x "$LOADTEST_BIN" ]; then
    # 1 room (2 speakers, 3 listeners: real WebRTC peers) and 5 gateway clients posting 10
    # messages/s, 15 s of steady state after the last join: enough for a few SFU stats intervals.
    if timeout 120 "$LOADTEST_BIN" mixed --url "$CONFAB_URL" --rooms 1 --speakers 2 --listeners 3 \
        --clients 5 --rate 10 --duration 15 --threads 1 --json "$TMP/loadtest.json" \
        >"$TMP/loadtest.log" 2>&1; then
        pass "confab-loadtest mixed ran against $CONFAB_URL"
    else
        fail "confab-loadtest mixed failed (status $?)"
        tail -20 "$TMP/loadtest.log"
    fi
    python3 - "$TMP/loadtest.json" <<'PY' || true
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:  # noqa: BLE001
    print(f"note: no load-test JSON ({e})"); sys.exit(0)
v, c = r.get("voice", {}), r.get("chat", {})
print(f"load test: voice joined {v.get('joined')} failed {v.get('failed')} loss {v.get('loss_percent')}% "
      f"p99 {v.get('latency_ms', {}).get('p99')} ms; chat lost {c.get('lost')} "
      f"deliveries/s {c.get('deliveries_per_second')}")
PY
else
    fail "no load tester at $LOADTEST_BIN"
fi

section "waiting for scrapes"
query() { # PromQL → first value or empty
    curl -s --max-time 5 -G "$PROM_URL/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null
}
ready=""
for _ in $(seq 1 60); do
    n=$(query 'count_over_time(up{job="confab"}[1m])')
    m=$(query 'count_over_time(confab_messages_created_total{job="confab"}[1m])')
    if [ "${n:-0}" -ge 10 ] 2>/dev/null && [ "${m:-0}" -ge 3 ] 2>/dev/null; then ready=1; break; fi
    sleep 1
done
if [ -n "$ready" ]; then
    pass "Prometheus holds $n scrapes of Confab, the traffic's counters included"
else
    fail "Prometheus did not collect enough scrapes (up samples: ${n:-none}, message counter samples: ${m:-none})"
    curl -s -m 10 "$PROM_URL/api/v1/targets" | head -c 1500; echo
fi
sleep 2 # one more rule evaluation over the newest samples

section "dashboard expressions and core series against Prometheus"
run_obs evaluate "$ROOT" "$PROM_URL" --require-data --node "$NODE_NAME"

if ! kill -0 "$CONFAB_PID" 2>/dev/null; then
    fail "confab exited during the test"
    tail -30 "$TMP/confab.log"
fi
finish
