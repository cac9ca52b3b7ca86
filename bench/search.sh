#!/usr/bin/env bash
# Message search latency: one server with 50 text channels and 1,000,000 messages (seeded in
# SQL, bench/search-seed.sql), searched through the real HTTP endpoint by a member who may read
# 45 of the channels (the other 5 hidden by overwrites). Each round sends a mix of queries one
# after another over one keep-alive connection (curl) and takes the time of each answer:
#
#   common    a word in most messages            rare      a word in a few hundred
#   medium    a word in one message in ~100       two       two words (AND)
#   phrase    "two words" next to each other      from      from:user + a word
#   in        in:channel + a word                 link      has:link + a word
#   only      from:user alone (no words)          old       a word before:<half a year ago>
#   none      a word in no message                page2     the second page (cursor) of a word
#
#   bench/search.sh                        # 1,000,000 messages, 50 channels, 3 rounds of 600 queries
#   bench/search.sh --messages 200000 --rounds 1 --queries 240
#   bench/search.sh --smoke                # debug build, 20,000 messages, 1 round of 120
#
# Prints per round p50/p99/max overall and p99 per kind, then `explain KIND:` lines (the indexes
# PostgreSQL used for a common, medium and rare word, from:+word, has:link and from: alone, with
# EXPLAIN ANALYZE's execution time); last line `p50_ms=A p99_ms=B` (the medians over the rounds). Every answer must be 200, and words that occur must find messages.
# Needs psql, curl, jq. Env: CONFAB_BIN (default target/release/confab, target/debug with
# --smoke; built when missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
messages=1000000
channels=50
rounds=3
queries=600
profile=release
keep=""
while (($#)); do
  case "$1" in
    --messages) messages=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --smoke) profile=debug; messages=20000; rounds=1; queries=120; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "search: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
for tool in psql curl jq; do
  command -v "$tool" >/dev/null || { echo "search: needs $tool" >&2; exit 1; }
done
CONFAB_BIN=${CONFAB_BIN:-$ROOT/target/$profile/confab}
if [[ ! -x $CONFAB_BIN ]]; then
  flag=(); [[ $profile == release ]] && flag=(--release)
  (cd "$ROOT" && cargo build "${flag[@]}" -p confab-signaling --bin confab)
fi

# PostgreSQL runs as an unprivileged user who must reach the data directory.
data=$(mktemp -d -t search-bench.XXXXXX)
chmod 755 "$data"
pid=""
cleanup() {
  if [[ -n $pid ]]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [[ -n $keep ]]; then mkdir -p "$keep" && cp "$data"/*.txt "$data"/confab.log "$keep"/ 2>/dev/null || true; fi
  rm -rf "$data"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port/api/v1"
"$CONFAB_BIN" --bind "127.0.0.1:$port" --udp-port 0 --data-dir "$data" --rate-limit-scale 1000 \
  --jwt-secret "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$data/confab.log" 2>&1 &
pid=$!
for _ in $(seq 1 240); do
  curl -fs -m 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "search: confab exited (log: $data/confab.log)" >&2; cat "$data/confab.log" >&2; exit 1; }
  sleep 0.5
done
db="postgres://confab@localhost/confab?host=$data/pg/run"
sql() { psql "$db" -v ON_ERROR_STOP=1 -qAt "$@"; }

api() { # method path token [body]
  if (($# > 3)); then
    curl -fsS -X "$1" "$base$2" -H "authorization: Bearer $3" -H 'content-type: application/json' -d "$4"
  else
    curl -fsS -X "$1" "$base$2" -H "authorization: Bearer $3"
  fi
}
register() { # name -> "id token"
  curl -fsS "$base/auth/register" -H 'content-type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"bench-password-$1\"}" | jq -r '"\(.user.id) \(.token)"'
}

echo "search: setting up a server with $channels channels and 20 authors" >&2
read -r owner_id owner < <(register bench_owner)
read -r reader_id reader < <(register bench_reader)
server=$(api POST /servers "$owner" '{"name":"Search bench"}' | jq -r .id)
for i in $(seq 2 "$channels"); do
  api POST "/servers/$server/channels" "$owner" "{\"name\":\"chan-$i\",\"type\":\"text\"}" >/dev/null
done
code=$(api POST "/servers/$server/invites" "$owner" '{}' | jq -r .code)
authors=("$owner_id")
for i in $(seq 1 19); do
  read -r id token < <(register "bench_author_$i")
  api POST "/invites/$code" "$token" >/dev/null
  authors+=("$id")
done
api POST "/invites/$code" "$reader" >/dev/null
# Five channels the reader may not see (@everyone denied VIEW_CHANNEL; the owner still sees them).
mapfile -t text_channels < <(api GET "/servers/$server/channels" "$owner" | jq -r '.[] | select(.type=="text") | .id')
for c in "${text_channels[@]:0:5}"; do
  api PUT "/channels/$c/permissions/$server" "$owner" '{"type":"role","allow":"0","deny":"1024"}' >/dev/null
done

echo "search: seeding $messages messages" >&2
seed_start=$(date +%s)
sql -v server="$server" -v authors="{$(IFS=,; echo "${authors[*]}")}" -v n="$messages" \
  -f "$ROOT/bench/search-seed.sql" 2>&1 | grep -v NOTICE || true
echo "search: seeded in $(($(date +%s) - seed_start)) s" >&2
[[ $(sql -c 'SELECT count(*) FROM messages') -ge $messages ]] || { echo "search: seeding failed" >&2; exit 1; }

visible=("${text_channels[@]:5}")
words() { sql -c "SELECT word FROM bench_words WHERE rank BETWEEN $1 AND $2 ORDER BY random() LIMIT $3"; }
enc() { jq -rn --arg v "$1" '$v|@uri'; }
old_day=$(date -u -d '-183 days' +%Y-%m-%d)

# One round's queries: "kind<TAB>path", in a shuffled order.
make_queries() {
  local per=$(( (queries + 11) / 12 )) kind w w2 i
  mapfile -t common < <(words 1 20 "$per")
  mapfile -t medium < <(words 50 500 "$((per * 6))")
  mapfile -t rare < <(words 1000 5000 "$((per * 2))")
  # Twenty common words serve every round: taken in turn.
  local nc=${#common[@]}
  for i in $(seq 0 $((per - 1))); do
    local c1=${common[$((i % nc))]} c2=${common[$(((i + 1) % nc))]}
    local ch=${visible[$((RANDOM % ${#visible[@]}))]}
    local au=${authors[$((RANDOM % ${#authors[@]}))]}
    printf 'common\t%s\n' "q=$(enc "$c1")"
    printf 'medium\t%s\n' "q=$(enc "${medium[$i]}")"
    printf 'rare\t%s\n' "q=$(enc "${rare[$i]}")"
    printf 'two\t%s\n' "q=$(enc "${medium[$((per + i))]} ${rare[$((per + i))]}")"
    printf 'phrase\t%s\n' "q=$(enc "\"$c1 $c2\"")"
    printf 'from\t%s\n' "q=$(enc "from:<@$au> ${medium[$((2 * per + i))]}")"
    printf 'in\t%s\n' "q=$(enc "in:$ch ${medium[$((3 * per + i))]}")"
    printf 'link\t%s\n' "q=$(enc "has:link $c1")"
    printf 'only\t%s\n' "q=$(enc "from:<@$au>")"
    printf 'old\t%s\n' "q=$(enc "before:$old_day ${medium[$((4 * per + i))]}")"
    printf 'none\t%s\n' "q=$(enc "zq${RANDOM}x${i}")"
    # The second page: the cursor is the last id of the first (fetched now, not timed).
    local first
    first=$(curl -fsS "$base/servers/$server/messages/search?q=$(enc "${medium[$((5 * per + i))]}")" \
      -H "authorization: Bearer $reader" | jq -r 'last | .id // empty')
    printf 'page2\t%s\n' "q=$(enc "${medium[$((5 * per + i))]}")${first:+&cursor=$first}"
  done | shuf | head -n "$queries"
}

# Runs the queries over one connection; writes "kind<TAB>status<TAB>ms<TAB>results".
run_round() { # round
  local list=$data/queries-$1.txt cfg=$data/curl-$1.cfg out=$data/times-$1.txt
  make_queries >"$list"
  : >"$cfg"
  local n=0
  while IFS=$'\t' read -r kind q; do
    n=$((n + 1))
    printf 'url = "%s"\noutput = "%s"\n' "$base/servers/$server/messages/search?$q" "$data/body-$n.json" >>"$cfg"
  done <"$list"
  curl -sS -K "$cfg" -H "authorization: Bearer $reader" -w '%{http_code}\t%{time_total}\n' >"$data/raw-$1.txt"
  : >"$out"
  n=0
  while IFS=$'\t' read -r code secs; do
    n=$((n + 1))
    local kind results
    kind=$(sed -n "${n}p" "$list" | cut -f1)
    results=$(jq length "$data/body-$n.json" 2>/dev/null || echo -1)
    printf '%s\t%s\t%s\t%s\n' "$kind" "$code" "$(awk -v s="$secs" 'BEGIN {printf "%.3f", s * 1000}')" "$results" >>"$out"
    rm -f "$data/body-$n.json"
  done <"$data/raw-$1.txt"
}

pct() { # p file-of-numbers
  sort -n "$2" | awk -v p="$1" '{a[NR]=$1} END {i=int((p*NR+99)/100); if(i<1)i=1; if(i>NR)i=NR; print a[i]}'
}

# A warm-up round (not counted): the first searches read the index and the table from disk.
echo "search: warming up" >&2
queries_wanted=$queries; queries=120; run_round warmup; queries=$queries_wanted

p50s=(); p99s=()
for r in $(seq 1 "$rounds"); do
  run_round "$r"
  f=$data/times-$r.txt
  bad=$(awk -F'\t' '$2 != 200' "$f" | wc -l)
  ((bad == 0)) || { echo "search: $bad answers were not 200:" >&2; awk -F'\t' '$2 != 200' "$f" | head >&2; exit 1; }
  # Words that occur must find something.
  empty=$(awk -F'\t' '($1=="common"||$1=="medium"||$1=="rare"||$1=="only"||$1=="link") && $4 < 1' "$f" | wc -l)
  ((empty == 0)) || { echo "search: $empty searches for words that occur found nothing" >&2; exit 1; }
  cut -f3 "$f" >"$data/all-$r.txt"
  p50=$(pct 50 "$data/all-$r.txt"); p99=$(pct 99 "$data/all-$r.txt"); max=$(pct 100 "$data/all-$r.txt")
  p50s+=("$p50"); p99s+=("$p99")
  per=""
  for kind in common medium rare two phrase from in link only old none page2; do
    awk -F'\t' -v k="$kind" '$1==k {print $3}' "$f" >"$data/k.txt"
    [[ -s $data/k.txt ]] && per+=" $kind=$(pct 99 "$data/k.txt")"
  done
  echo "round $r: $(wc -l <"$f") queries p50_ms=$p50 p99_ms=$p99 max_ms=$max; p99 by kind:$per"
done
# How PostgreSQL answers each kind (the statement chat/src/search.rs builds, over the reader's
# 45 channels): which indexes, and the execution time on the warm cache.
explain() { # kind where-clause
  local plan
  plan=$(sql -c "EXPLAIN (ANALYZE, COSTS off) SELECT m.id FROM messages m
    WHERE m.channel_id = ANY('{$(IFS=,; echo "${visible[*]}")}'::bigint[]) AND $2 ORDER BY m.id DESC LIMIT 25")
  echo "explain $1: $(grep -oE '(Index Scan Backward using|Bitmap Index Scan on|Index Scan using) [a-z_]+' <<<"$plan" | sed -E 's/ (using|on) / /' | paste -sd+ -) $(grep -oE 'Execution Time: [0-9.]+ ms' <<<"$plan")"
}
w1=$(words 1 1 1); w2=$(words 300 300 1); w3=$(words 4000 4000 1)
for spec in "common:$w1" "medium:$w2" "rare:$w3"; do
  kind=${spec%%:*}; word=${spec#*:}
  explain "$kind" "m.search_vector @@ (websearch_to_tsquery(message_search_config(), '$word') || websearch_to_tsquery('simple', '$word'))"
done
explain "from+medium" "m.author_id = ANY('{${authors[3]}}') AND m.search_vector @@ (websearch_to_tsquery(message_search_config(), '$w2') || websearch_to_tsquery('simple', '$w2'))"
explain "link" "m.content ~* 'https?://'"
explain "only" "m.author_id = ANY('{${authors[3]}}')"

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "p50_ms=$(median "${p50s[@]}") p99_ms=$(median "${p99s[@]}")"
