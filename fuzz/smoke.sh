#!/usr/bin/env bash
# A short run of every fuzz target on the generated seed corpus (fuzz/seed.sh):
# SPARQ_FUZZ_SECONDS (default 60) each, with the limits of fuzz/README.md; fails on a crash,
# a hang or an allocation over the limit. Without a nightly toolchain and cargo-fuzz it says
# so in one line and succeeds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! cargo +nightly -V >/dev/null 2>&1; then
    echo "fuzz smoke skipped: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke skipped: cargo-fuzz is not installed (cargo install cargo-fuzz)"
    exit 0
fi

seconds="${SPARQ_FUZZ_SECONDS:-60}"
targets=(batch_json config server_request gguf weights tokenize)
bash seed.sh
cargo +nightly fuzz build --sanitizer none
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
    echo "--- fuzz $t for ${seconds}s"
    if ! cargo +nightly fuzz run --sanitizer none "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz $t: FAILED (the failing input is in fuzz/artifacts/$t)"
        exit 1
    fi
    grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units)' "$log" || true
done
