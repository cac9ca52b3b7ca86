#!/usr/bin/env bash
# Upload throughput and server memory: one user sends N messages each carrying one 25 MiB file
# (random bytes, so it passes through the metadata scrubber untouched; or --image for a JPEG,
# which is walked segment by segment) to a release `confab` storing files in its data
# directory, one after another over loopback with curl, and prints the median MB/s of the
# uploads, the server's RSS before and after, and its peak RSS.
#
#   bench/upload.sh                     # 10 uploads of 25 MiB
#   bench/upload.sh --count 20 --mib 25
#
# Env: CONFAB_BIN (default: target/release/confab; built when missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
count=10
mib=25
while (($#)); do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "upload: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
command -v jq >/dev/null || { echo "upload: needs jq" >&2; exit 1; }
CONFAB_BIN=${CONFAB_BIN:-$ROOT/target/release/confab}
if [[ ! -x $CONFAB_BIN ]]; then
  (cd "$ROOT" && cargo build --release -p confab-signaling)
fi
work=$(mktemp -d -t confab-upload.XXXXXX)
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$CONFAB_BIN" --bind "127.0.0.1:$port" --udp-port 0 --data-dir "$work/data" --rate-limit-scale 100 \
  --max-upload-mib "$((mib + 1))" --user-storage-quota-mib 0 --server-storage-quota-mib 0 >"$work/confab.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 600); do curl -fs "$base/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
api() { curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
token=$(curl -fsS -H 'Content-Type: application/json' -d '{"username":"uploader","password":"correct horse battery"}' \
  "$base/api/v1/auth/register" | jq -r .token)
server=$(api -d '{"name":"Uploads"}' "$base/api/v1/servers" | jq -r .id)
channel=$(api "$base/api/v1/servers/$server/channels" | jq -r '[.[] | select(.type=="text")][0].id')
head -c "$((mib * 1024 * 1024))" /dev/urandom >"$work/file.bin"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$pid/status"; }
rss_before=$(rss)
speeds=()
for i in $(seq 1 "$count"); do
  # curl's speed_upload: bytes/s of the request body; the 201 comes after the last byte is stored.
  read -r code speed < <(curl -s -o /dev/null -w '%{http_code} %{speed_upload}\n' \
    -H "Authorization: Bearer $token" -F "payload_json={\"content\":\"upload $i\"}" \
    -F "files[0]=@$work/file.bin;filename=file.bin" "$base/api/v1/channels/$channel/messages")
  [[ $code == 201 ]] || { echo "upload $i: HTTP $code" >&2; tail -20 "$work/confab.log" >&2; exit 1; }
  speeds+=("$speed")
done
rss_after=$(rss)
peak=$(hwm)
stored=$(du -sm "$work/data/files" | cut -f1)
median=$(printf '%s\n' "${speeds[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
printf 'uploads=%d file_mib=%d stored_mib=%d\n' "$count" "$mib" "$stored"
awk -v a="$rss_before" -v b="$rss_after" -v p="$peak" \
  'BEGIN { printf "rss_before_mib=%.1f rss_after_mib=%.1f peak_rss_mib=%.1f\n", a/1024, b/1024, p/1024 }'
awk -v m="$median" 'BEGIN { printf "median_mb_per_s=%.1f\n", m/1000000 }'
