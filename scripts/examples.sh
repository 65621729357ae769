#!/usr/bin/env bash
# Builds and runs every example in examples/ and server/examples/ (a new one is picked up by
# its file or folder name; none is listed here), each with its defaults: the models of scripts/setup.sh and
# small inputs, so that the whole run stays short on a 2-core CPU adapter. Fails on the
# first example that fails or runs past SPARQ_EXAMPLE_TIMEOUT seconds (default 300).
#   bash scripts/examples.sh            # all
#   bash scripts/examples.sh embed      # those named
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
sparq_setup
cd "$SPARQ_ROOT"
say() { printf 'examples: %s\n' "$*" >&2; }

# Tools kept in examples/ for their scripts, not examples for a reader: run by those scripts.
#   fuzz_seed: writes the fuzzers' seed corpus (fuzz/seed.sh), takes an output folder.
skip=(fuzz_seed)

names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
    for f in examples/*.rs examples/*/main.rs server/examples/*.rs server/examples/*/main.rs; do
        [[ -e $f ]] || continue
        name=${f#server/}
        name=${name#examples/}
        name=${name%.rs}
        name=${name%/main}
        [[ " ${skip[*]} " == *" $name "* ]] && continue
        names+=("$name")
    done
fi

cargo build --workspace --examples
timeout_s=${SPARQ_EXAMPLE_TIMEOUT:-300}
for name in "${names[@]}"; do
    start=$SECONDS
    say "example $name"
    if ! timeout "$timeout_s" "target/debug/examples/$name"; then
        say "example $name FAILED after $((SECONDS - start)) s"
        exit 1
    fi
    say "example $name: ok ($((SECONDS - start)) s)"
done
