#!/usr/bin/env bash
# Set up, then run the test suite of the whole workspace (the library and the `sparq`
# command line; dev profile) on every adapter the machine has (lavapipe and llvmpipe on a
# machine without a GPU). Arguments go to `cargo test --workspace`, e.g.
#   bash scripts/test.sh --test linear
#   SPARQ_TEST_ADAPTERS=vulkan SPARQ_SEED=123 bash scripts/test.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
sparq_setup
cd "$SPARQ_ROOT"
exec cargo test --workspace "$@"
