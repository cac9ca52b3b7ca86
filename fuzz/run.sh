#!/usr/bin/env bash
# Runs the fuzz targets (cargo-fuzz / libFuzzer) for a short while each.
#
# Usage:  fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 5 s, every target)
# Environment: FUZZ_PROFILE=dev (default: unoptimised, builds in about half the time of a
# release build: right for ./test's few seconds) or release (several times more executions
# per second: use it for long runs).
#
# Works on the stable toolchain: cargo-fuzz needs nightly flags, which RUSTC_BOOTSTRAP=1
# unlocks. cargo-fuzz is installed (pinned) when missing. Targets are built without a
# sanitizer (the code under test is safe Rust; what is looked for is panics, overflows and
# broken invariants) but with debug assertions and overflow checks.
# New inputs go to a temporary corpus; the committed seeds in fuzz/corpus/<target> are only
# read. A crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
SECS=${1:-5}
shift || true
CARGO_FUZZ_VERSION=0.13.2
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

case "${FUZZ_PROFILE:-dev}" in
    dev) flags=(--dev --sanitizer none) ;;
    release) flags=(--release --sanitizer none) ;;
    *) echo "fuzz: FUZZ_PROFILE must be dev or release" >&2; exit 2 ;;
esac

if (( $# )); then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
cargo fuzz build "${flags[@]}"

work=$(mktemp -d -t confab-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "corpus/$t"
    echo "fuzz: $t for ${SECS} s"
    if ! cargo fuzz run "${flags[@]}" "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$SECS" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        2>"$work/$t.log"; then
        grep -vE '^#[0-9]+' "$work/$t.log" | tail -40 >&2
        failed+=("$t")
    else
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$work/$t.log" | tr '\n' ' ' || true
        echo
    fi
done
if (( ${#failed[@]} )); then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/; reproduce with" \
        "RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} <target> <input>)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${SECS} s each: no crash"
