#!/usr/bin/env bash
# Formatting and lints over the whole workspace: `cargo fmt --all --check` and
# `cargo clippy --workspace --all-targets -- -D warnings`.
# Installs the rustup components where they are missing; skips a check (with a message) where
# they cannot be installed. Exits non-zero when a check that ran fails.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
sparq_setup_rust
cd "$SPARQ_ROOT"

# True when `cargo $1` works, after trying `rustup component add $2` if it did not.
have_component() {
    cargo "$1" --version >/dev/null 2>&1 && return 0
    if command -v rustup >/dev/null 2>&1; then
        sparq_log "rustup component add $2"
        rustup component add "$2" >&2 || true
        cargo "$1" --version >/dev/null 2>&1 && return 0
    fi
    sparq_log "warning: cargo $1 is not available (no rustup component $2): skipping it"
    return 1
}

status=0
if have_component fmt rustfmt; then
    sparq_log "cargo fmt --all --check"
    cargo fmt --all --check || status=1
fi
if have_component clippy clippy; then
    sparq_log "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings || status=1
fi
exit "$status"
