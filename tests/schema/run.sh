#!/usr/bin/env bash
# Schema fuzzing: schemathesis against /api/v1/openapi.json of a running debug `confab`, as
# an authenticated member of a server that has channels, messages, a role and an invite.
# Checks: no 5xx (`not_a_server_error`) and every response matches the documented schema
# (`response_schema_conformance`).
#
# Usage (from anywhere):  tests/schema/run.sh [--max-time SECS] [extra schemathesis args]
# Environment: CONFAB_BIN (default target/debug/confab; built when missing),
# SCHEMA_MAX_TIME (default 75: schemathesis's whole budget, in seconds), SCHEMA_SEED (default 1,
# so ./test generates the same requests every time), KEEP_TMP=1 keeps the temporary directory
# (server log).
# schemathesis is installed (pinned) into a virtualenv under target/, once.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
SCHEMATHESIS_VERSION=4.32.5
VENV="$ROOT/target/schemathesis/venv"
MAX_TIME=${SCHEMA_MAX_TIME:-75}
if [[ "${1:-}" == "--max-time" ]]; then MAX_TIME=$2; shift 2; fi

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    echo "schema: installing schemathesis $SCHEMATHESIS_VERSION into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

BIN=${CONFAB_BIN:-$ROOT/target/debug/confab}
if [[ ! -x "$BIN" ]]; then
    cargo build -p confab-signaling --bin confab
fi

TMP=$(mktemp -d -t confab-schema.XXXXXX)
# The private PostgreSQL runs as an unprivileged user: it must be able to traverse.
chmod 755 "$TMP"
PID=""
cleanup() {
    if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    if [[ "${KEEP_TMP:-}" == 1 ]]; then echo "schema: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
"$BIN" --bind "127.0.0.1:$PORT" --udp-port 0 --data-dir "$TMP/data" --rate-limit-scale 100 \
    >"$TMP/confab.log" 2>&1 &
PID=$!
for i in $(seq 720); do
    if curl -fsS -m 2 "$URL/readyz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$PID" 2>/dev/null || [[ $i == 720 ]]; then
        echo "schema: confab did not become ready; log:" >&2
        tail -50 "$TMP/confab.log" >&2
        exit 1
    fi
    sleep 0.25
done

# The fixture: an owner (whose token schemathesis uses, and a second session of theirs) and a
# second member, a server with its channels, a message, a role and an invite. Path parameters are pinned to them so the
# generated requests reach the handlers' logic rather than only their 404s.
python3 "$ROOT/tests/schema/fixture.py" "$URL" >"$TMP/fixture.env"
# shellcheck disable=SC1091
source "$TMP/fixture.env"
cat >"$TMP/schemathesis.toml" <<TOML
[parameters]
"path.server_id" = "$SERVER_ID"
"path.channel_id" = "$CHANNEL_ID"
"path.message_id" = "$MESSAGE_ID"
"path.user_id" = "$MEMBER_ID"
"path.role_id" = "$ROLE_ID"
"path.overwrite_id" = "$ROLE_ID"
"path.code" = "$INVITE_CODE"
"path.session_id" = "$SESSION_ID"
"path.sound_id" = "$SOUND_ID"
TOML

# Left out: operations that end the fixture itself (the token's own session, the server,
# the channel the others are pinned to). Their handlers are covered by the crate tests.
# Generated strings include NUL bytes: text that PostgreSQL cannot store must come back as a
# 400 naming the field, never a 500.
set +e
(
    cd "$TMP"
    "$VENV/bin/schemathesis" --config-file "$TMP/schemathesis.toml" run "$URL/api/v1/openapi.json" \
        --url "$URL" \
        -H "Authorization: Bearer $TOKEN" \
        --checks not_a_server_error,response_schema_conformance \
        --exclude-name 'POST /api/v1/auth/logout' \
        --exclude-name 'DELETE /api/v1/servers/{server_id}' \
        --exclude-name 'DELETE /api/v1/channels/{channel_id}' \
        --phases examples,coverage,fuzzing \
        --max-time "$MAX_TIME" \
        --workers 2 \
        --request-timeout 10 \
        --seed "${SCHEMA_SEED:-1}" \
        --no-color \
        "$@"
)
rc=$?
set -e
if (( rc != 0 )); then
    echo "schema: schemathesis failed (exit $rc); the server's last log lines:" >&2
    grep -aE 'ERROR|panicked' "$TMP/confab.log" | tail -10 | cut -c1-400 >&2 || true
fi
exit "$rc"
