#!/usr/bin/env bash
# A whole Confab cluster on loopback, for trying things out and for the cluster tests: a private
# nats-server (JetStream on, store in the state dir), one PostgreSQL (initdb/pg_ctl, like the
# private cluster `confab` provisions, on a free port), N api nodes and M media nodes, and nginx
# in front of the api nodes as the HTTP + WebSocket load balancer (round-robin, no stickiness).
#
#   scripts/cluster.sh start [--api N] [--media M] [--port P] [--media-capacity C] [-- ARGS FOR THE API NODES]
#   scripts/cluster.sh status [--json]    # every component, its pid, port and whether it is up
#   scripts/cluster.sh url                # the load balancer's URL
#   scripts/cluster.sh kill NODE          # kill -9 one node (api-1, media-2, nginx, nats, …)
#   scripts/cluster.sh restart NODE       # start a killed node again, same ports and arguments
#   scripts/cluster.sh stop [--purge]     # stop everything; --purge also removes the state dir
#
# `start` is idempotent: it starts what is not running and leaves the rest alone (a second
# `start` prints the URL). Defaults: 3 api nodes, 2 media nodes, a free port for nginx.
# `--kill NODE` is the same as `kill NODE`.
#
# State dir: --dir DIR or CONFAB_CLUSTER_DIR (default: $TMPDIR/confab-cluster-<uid>). It holds
# cluster.env (URL, ports, DATABASE_URL, NATS_URL, the node list; KEY=value lines a shell can
# source), one <component>.cmd (its command line), <component>.pid, logs/<component>.log, and the
# data of PostgreSQL, NATS and the nodes. Env: CONFAB_BIN (default target/debug/confab, built
# when missing), DATABASE_URL (use that PostgreSQL instead of starting one), CONFAB_WEB_DIR
# (default: this checkout's web/). Needs nats-server, nginx, curl and PostgreSQL's server
# programs (scripts/install-deps.sh --test installs them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
dir=${CONFAB_CLUSTER_DIR:-${TMPDIR:-/tmp}/confab-cluster-$(id -u)}
n_api=3
n_media=2
lb_port=""
json=0
purge=0
cmd=""
node=""
api_args=()
media_capacity=0
while (($#)); do
  case "$1" in
    start|stop|status|url) cmd=$1; shift ;;
    kill|--kill|restart) cmd=${1#--}; node=${2:?"$1 needs a component name"}; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --api) n_api=$2; shift 2 ;;
    --media) n_media=$2; shift 2 ;;
    --port) lb_port=$2; shift 2 ;;
    --media-capacity) media_capacity=$2; shift 2 ;;
    --json) json=1; shift ;;
    --purge) purge=1; shift ;;
    --) shift; api_args=("$@"); break ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ -n $cmd ]] || { sed -n '2,25p' "$0"; exit 64; }

say() { echo "cluster.sh: $*" >&2; }
die() { say "$*"; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp_port() { python3 -c 'import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
alive() { [[ -f $dir/$1.pid ]] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }
# Each component leads its own process group (setsid): signal the group, so nginx's workers go
# with their master.
signal() { kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "$2" 2>/dev/null || true; }
# cluster.env, once written by `start`.
load_env() { [[ -f $dir/cluster.env ]] || die "no cluster in $dir (run: scripts/cluster.sh start)"; . "$dir/cluster.env"; }
components() { echo postgres nats $MEDIA_NODES $API_NODES nginx; }

# PostgreSQL runs as the unprivileged `postgres` user when we are root (as `confab` does).
as_pg() {
  if [[ $EUID -eq 0 ]]; then (cd / && setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"); else "$@"; fi
}
pg_bin() {
  if [[ -n ${CONFAB_PG_BIN:-} ]]; then echo "$CONFAB_PG_BIN"; return; fi
  local b
  b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [[ -x $b/initdb ]] || die "PostgreSQL server programs not found (scripts/install-deps.sh), or set DATABASE_URL"
  echo "$b"
}

# Writes cluster.env and every component's command line (ports chosen once, so a restarted
# node comes back where it was).
configure() {
  mkdir -p "$dir/logs" "$dir/data"
  chmod 755 "$dir" "$dir/data"
  local secret nats_port pg_port db_url api_nodes="" media_nodes="" upstreams="" i port udp
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  [[ -n $lb_port ]] || lb_port=$(free_port)
  nats_port=$(free_port)
  local bin=${CONFAB_BIN:-$ROOT/target/debug/confab}
  local web=${CONFAB_WEB_DIR:-$ROOT/web}
  local url="http://127.0.0.1:$lb_port"

  # PostgreSQL: one cluster shared by every api node.
  if [[ -n ${DATABASE_URL:-} ]]; then
    db_url=$DATABASE_URL
  else
    pg_port=$(free_port)
    db_url="postgres://confab@127.0.0.1:$pg_port/confab"
    local pgdata=$dir/data/postgres
    printf '%q ' "$(pg_bin)/pg_ctl" -D "$pgdata" -l "$dir/logs/postgres.log" -w -o \
      "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir/data/pg-run -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >"$dir/postgres.cmd"
    echo "PG_PORT=$pg_port" >>"$dir/ports"
  fi

  # NATS with JetStream, its store in the state dir.
  printf '%q ' nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$dir/data/nats" >"$dir/nats.cmd"

  for i in $(seq 1 "$n_media"); do
    port=$(free_port); udp=$(free_udp_port)
    printf '%q ' "$bin" --role media --node-name "media-$i" --nats-url "nats://127.0.0.1:$nats_port" \
      --bind "127.0.0.1:$port" --udp-port "$udp" --relay-port 0 --data-dir "$dir/data/media-$i" \
      --media-capacity "$media_capacity" --log-format json >"$dir/media-$i.cmd"
    echo "$port" >"$dir/media-$i.port"
    media_nodes+=" media-$i"
  done
  for i in $(seq 1 "$n_api"); do
    port=$(free_port)
    printf '%q ' env "CONFAB_WEB_DIR=$web" "$bin" --role api --node-name "api-$i" \
      --nats-url "nats://127.0.0.1:$nats_port" --bind "127.0.0.1:$port" --jwt-secret "$secret" \
      --database-url "$db_url" --public-url "$url" --data-dir "$dir/data/api-$i" --log-format json \
      "${api_args[@]}" >"$dir/api-$i.cmd"
    echo "$port" >"$dir/api-$i.port"
    api_nodes+=" api-$i"
    upstreams+="        server 127.0.0.1:$port max_fails=1 fail_timeout=5s;"$'\n'
  done
  echo "$lb_port" >"$dir/nginx.port"
  echo "$nats_port" >"$dir/nats.port"

  # nginx: see docs/cluster.md ("A worked example") for what each line is for.
  mkdir -p "$dir/data/nginx"
  chmod 777 "$dir/data/nginx"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/data/nginx/nginx.pid;
error_log $dir/logs/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log $dir/logs/nginx-access.log combined;
    client_body_temp_path $dir/data/nginx/body;
    proxy_temp_path $dir/data/nginx/proxy;
    fastcgi_temp_path $dir/data/nginx/fastcgi;
    uwsgi_temp_path $dir/data/nginx/uwsgi;
    scgi_temp_path $dir/data/nginx/scgi;
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      '';
    }
    upstream confab_api {
$upstreams        keepalive 32;
    }
    server {
        listen 127.0.0.1:$lb_port;
        client_max_body_size 25m;
        location / {
            proxy_pass http://confab_api;
            proxy_http_version 1.1;
            proxy_set_header Host \$http_host;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_connect_timeout 2s;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_buffering off;
        }
    }
}
EOF
  printf '%q ' nginx -p "$dir/data/nginx" -c "$dir/nginx.conf" -e "$dir/logs/nginx-error.log" >"$dir/nginx.cmd"

  {
    echo "URL=$url"
    echo "LB_PORT=$lb_port"
    echo "NATS_URL=nats://127.0.0.1:$nats_port"
    echo "DATABASE_URL=$db_url"
    echo "JWT_SECRET=$secret"
    echo "API_NODES=\"${api_nodes# }\""
    echo "MEDIA_NODES=\"${media_nodes# }\""
    for i in $(seq 1 "$n_api"); do echo "API_${i}_URL=http://127.0.0.1:$(cat "$dir/api-$i.port")"; done
    for i in $(seq 1 "$n_media"); do echo "MEDIA_${i}_URL=http://127.0.0.1:$(cat "$dir/media-$i.port")"; done
  } >"$dir/cluster.env.tmp"
  mv "$dir/cluster.env.tmp" "$dir/cluster.env"
}

wait_http() { # what url seconds
  local i
  for i in $(seq 1 $(($3 * 4))); do
    curl -fs -m 2 -o /dev/null "$2" 2>/dev/null && return 0
    sleep 0.25
  done
  die "$1 not ready at $2 after $3 s (log: $dir/logs/$1.log)"
}

start_postgres() {
  [[ -f $dir/postgres.cmd ]] || return 0
  alive postgres && return 0
  local pgdata=$dir/data/postgres bin
  bin=$(pg_bin)
  mkdir -p "$dir/data/pg-run"
  touch "$dir/logs/postgres.log"
  if [[ $EUID -eq 0 ]]; then chown postgres: "$dir/data/pg-run" "$dir/logs/postgres.log"; fi
  if [[ ! -f $pgdata/PG_VERSION ]]; then
    rm -rf "$pgdata"; mkdir -p "$pgdata"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$pgdata"; fi
    as_pg env LC_ALL=C.UTF-8 "$bin/initdb" -D "$pgdata" -U confab --auth=trust -E UTF8 \
      --locale=C.UTF-8 --no-sync >>"$dir/logs/postgres.log" 2>&1 || die "initdb failed (see $dir/logs/postgres.log)"
    local fresh=1
  fi
  # shellcheck disable=SC2046
  eval "as_pg env LC_ALL=C.UTF-8 $(cat "$dir/postgres.cmd")" >/dev/null 2>>"$dir/logs/postgres.log" ||
    die "PostgreSQL did not start (see $dir/logs/postgres.log)"
  head -1 "$pgdata/postmaster.pid" >"$dir/postgres.pid"
  if [[ -n ${fresh:-} ]]; then
    local port; port=$(sed -n 's/^PG_PORT=//p' "$dir/ports")
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U confab confab || die "createdb failed"
  fi
}

# Starts one component from its .cmd in its own session (so a Ctrl-C in the terminal does not
# reach it) and records its pid.
launch() { # name
  local name=$1
  alive "$name" && return 0
  [[ -f $dir/$name.cmd ]] || die "no component $name (see: scripts/cluster.sh status)"
  mkdir -p "$dir/data/$name" 2>/dev/null || true
  echo "--- started $(date -u +%FT%TZ)" >>"$dir/logs/$name.log"
  eval "exec nohup setsid $(cat "$dir/$name.cmd")" </dev/null >>"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

start_component() { # name
  local name=$1
  case "$name" in
    postgres) start_postgres ;;
    nats)
      alive nats && return 0
      launch nats
      local i
      for i in $(seq 1 40); do
        (exec 3<>"/dev/tcp/127.0.0.1/$(cat "$dir/nats.port")") 2>/dev/null && return 0
        sleep 0.25
      done
      die "nats-server not listening (log: $dir/logs/nats.log)" ;;
    nginx)
      alive nginx && return 0
      launch nginx
      wait_http nginx "$URL/healthz" 30 ;;
    *)
      alive "$name" && return 0
      launch "$name"
      wait_http "$name" "http://127.0.0.1:$(cat "$dir/$name.port")/readyz" 180 ;;
  esac
}

stop_component() { # name
  local name=$1 pid i
  if [[ $name == postgres && -f $dir/data/postgres/PG_VERSION ]]; then
    alive postgres && as_pg "$(pg_bin)/pg_ctl" -D "$dir/data/postgres" -m fast -w stop >/dev/null 2>&1 || true
    rm -f "$dir/postgres.pid"
    return 0
  fi
  alive "$name" || { rm -f "$dir/$name.pid"; return 0; }
  pid=$(cat "$dir/$name.pid")
  signal TERM "$pid"
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  signal KILL "$pid"
  rm -f "$dir/$name.pid"
}

status() {
  load_env
  local name pid up port rows=()
  for name in $(components); do
    pid=""; up=false; port=""
    if [[ $name == postgres ]]; then
      [[ -f $dir/postgres.cmd ]] || continue
      port=$(sed -n 's/^PG_PORT=//p' "$dir/ports")
    else
      port=$(cat "$dir/$name.port" 2>/dev/null || true)
    fi
    alive "$name" && { pid=$(cat "$dir/$name.pid"); up=true; }
    rows+=("$name $up ${pid:--} ${port:--}")
  done
  if ((json)); then
    printf '%s\n' "${rows[@]}" | python3 -c '
import json, sys
out = {"url": sys.argv[1], "dir": sys.argv[2], "components": []}
for line in sys.stdin:
    name, up, pid, port = line.split()
    out["components"].append({"name": name, "up": up == "true", "pid": None if pid == "-" else int(pid),
                              "port": None if port == "-" else int(port), "log": f"{sys.argv[2]}/logs/{name}.log"})
print(json.dumps(out, indent=1))' "$URL" "$dir"
  else
    echo "cluster in $dir: $URL"
    printf '%-10s %-5s %-8s %s\n' component up pid port
    printf '%s\n' "${rows[@]}" | while read -r name up pid port; do
      printf '%-10s %-5s %-8s %s\n' "$name" "$up" "$pid" "$port"
    done
  fi
}

case "$cmd" in
  start)
    for tool in nats-server nginx curl python3 setpriv; do
      command -v "$tool" >/dev/null || die "needs $tool (scripts/install-deps.sh --test)"
    done
    if [[ ! -f $dir/cluster.env ]]; then
      bin=${CONFAB_BIN:-$ROOT/target/debug/confab}
      if [[ ! -x $bin ]]; then (cd "$ROOT" && cargo build -p confab-signaling); fi
      rm -rf "$dir"; mkdir -p "$dir"
      configure
    elif ((${#api_args[@]})); then
      say "a cluster is configured in $dir already: arguments after -- are ignored (stop --purge first)"
    fi
    load_env
    for c in $(components); do start_component "$c"; done
    say "running: $API_NODES, $MEDIA_NODES behind nginx (state in $dir)"
    echo "$URL"
    ;;
  stop)
    if [[ -f $dir/cluster.env ]]; then
      load_env
      for c in nginx $API_NODES $MEDIA_NODES nats postgres; do stop_component "$c"; done
      # The next start is a fresh cluster (new ports, empty database); logs stay until --purge.
      rm -rf "$dir/data" "$dir/cluster.env" "$dir"/*.cmd "$dir"/*.port "$dir/ports" "$dir/nginx.conf"
    fi
    if ((purge)); then rm -rf "$dir"; fi
    ;;
  status) status ;;
  url) load_env; echo "$URL" ;;
  kill)
    load_env
    alive "$node" || die "$node is not running"
    signal KILL "$(cat "$dir/$node.pid")"
    rm -f "$dir/$node.pid"
    say "killed $node (kill -9)"
    ;;
  restart)
    load_env
    start_component "$node"
    say "$node running"
    ;;
esac
