#!/usr/bin/env bash
# Installs the Debian packages Confab needs, only those that are missing.
#   scripts/install-deps.sh          what running Confab needs (PostgreSQL server programs)
#   scripts/install-deps.sh --test   plus what the test suite needs (cmake for Opus, Chromium,
#                                    espeak-ng and sox for a speech microphone, Node.js, and
#                                    Janus, iproute2, jq and curl for the Janus comparison,
#                                    g++ for libFuzzer, python3-venv for schemathesis, nats-server
#                                    for the cluster tests, nginx as their load balancer and
#                                    for the reverse-proxy test, coturn and nftables for the TURN and
#                                    ICE-TCP tests)
set -euo pipefail

want=(postgresql pkg-config)
if [[ "${1:-}" == "--test" ]]; then
  want+=(cmake chromium espeak-ng sox nodejs npm janus iproute2 jq curl g++ python3-venv nats-server)
  # coturn: the TURN server the relay test joins voice through; nftables: the ICE-TCP test's
  # UDP-less network namespace.
  want+=(coturn nftables)
  # docker-compose (Debian's, no daemon needed): deploy/check.sh validates compose.yaml with it.
  want+=(docker-compose)
  # nginx in front of Confab (the cluster's load balancer, the reverse-proxy test); any nginx.
  want+=(nginx-light)
fi

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
# PostgreSQL may come from elsewhere: the server programs are what matters.
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing=("${missing[@]/postgresql}")
fi
if [[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null; then
  missing=("${missing[@]/nginx-light}")
fi
# Node.js may be installed without Debian's package.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}")
  missing=("${missing[@]/npm}")
fi
# A Docker with the compose plugin validates compose.yaml as well.
if docker compose version >/dev/null 2>&1; then
  missing=("${missing[@]/docker-compose}")
fi
pkgs=()
for p in "${missing[@]}"; do [[ -n "$p" ]] && pkgs+=("$p"); done

if ((${#pkgs[@]})); then
  echo "Installing: ${pkgs[*]}"
  SUDO=""
  if [[ $EUID -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi

# s3s-fs: an S3-compatible server over a directory, which the file store's S3 test stores
# into (crates.io is the one registry that has an S3 server; MinIO and Garage are not packaged).
if [[ "${1:-}" == "--test" ]] && ! command -v s3s-fs >/dev/null; then
  echo "Installing: s3s-fs (cargo)"
  cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
fi
