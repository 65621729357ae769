#!/usr/bin/env bash
# Writes the fuzzers' seed corpus to fuzz/corpus/<target>/ (not committed): small valid
# models, GGUF files, configs, batches, sentences and requests, from examples/fuzz_seed.rs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo run --quiet --example fuzz_seed -- fuzz/corpus models
