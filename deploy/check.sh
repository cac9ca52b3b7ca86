#!/usr/bin/env bash
# Checks the packaging files without a network:
#   - compose.yaml with `docker compose config` (or the older `docker-compose config`);
#   - deploy/confab.service with `systemd-analyze verify`;
# and with --build, when a container engine runs, builds the image and runs `confab --version`
# and `confab doctor` in it (slow: a release build; needs the base images).
# What cannot run here is reported as SKIPPED. deploy/confab.toml is checked by the unit test
# config::tests::the_example_config_file_loads.
set -euo pipefail
cd "$(dirname "$0")/.."
build=0
[[ "${1:-}" == "--build" ]] && build=1

compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
fi
if ((${#compose[@]})); then
  # Dummy secrets: only the file's structure is checked.
  out=$(POSTGRES_PASSWORD=check CONFAB_JWT_SECRET=check TURN_SECRET=check \
    "${compose[@]}" -f compose.yaml config)
  for service in confab postgres nats coturn prometheus grafana; do
    grep -q "^  $service:" <<<"$out" || { echo "compose.yaml: no service $service" >&2; exit 1; }
  done
  # Without the secrets it must refuse to start rather than run with empty passwords.
  if env -u POSTGRES_PASSWORD "${compose[@]}" -f compose.yaml config >/dev/null 2>&1; then
    echo "compose.yaml: accepted a missing POSTGRES_PASSWORD" >&2
    exit 1
  fi
  echo "compose.yaml: valid (${compose[*]} config)"
else
  echo "SKIPPED: compose.yaml validation (neither docker compose nor docker-compose installed)"
fi

if command -v systemd-analyze >/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # verify wants ExecStart's program to exist: point it at a stand-in.
  printf '#!/bin/sh\n' >"$tmp/confab" && chmod +x "$tmp/confab"
  sed "s#/usr/local/bin/confab#$tmp/confab#g" deploy/confab.service >"$tmp/confab.service"
  out=$(systemd-analyze verify "$tmp/confab.service" 2>&1 || true)
  if [[ -n "$out" ]]; then
    echo "deploy/confab.service: $out" >&2
    exit 1
  fi
  echo "deploy/confab.service: valid (systemd-analyze verify)"
else
  echo "SKIPPED: deploy/confab.service validation (systemd-analyze not installed)"
fi

if ((build)); then
  if docker info >/dev/null 2>&1; then
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    docker build -t confab:check --build-arg CONFAB_GIT_COMMIT="$commit" .
    docker run --rm confab:check --version | grep -q "(commit $commit)"
    # No database: doctor must say so and exit 1, not crash.
    set +e
    docker run --rm confab:check doctor >"${tmp:-/tmp}/doctor.txt" 2>&1
    rc=$?
    set -e
    [[ $rc == 1 ]] && grep -q "FATAL" "${tmp:-/tmp}/doctor.txt" ||
      { cat "${tmp:-/tmp}/doctor.txt" >&2; echo "image: doctor did not report the missing database" >&2; exit 1; }
    echo "Dockerfile: image built; --version names $commit; doctor runs as $(docker run --rm --entrypoint id confab:check -un)"
  else
    echo "SKIPPED: image build (no container engine running: docker info failed)"
  fi
fi
