#!/usr/bin/env bash
# The main job: set up, then run `sparq bench` (release build) on the best adapter with the
# built-in default data. Arguments go to `sparq bench`, e.g.
#   bash scripts/bench.sh --quick --json bench.json --adapter vulkan --formats f16,int4g32 --m 1,8
# SPARQ_ADAPTER selects the adapter as --adapter does.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
sparq_setup
cd "$SPARQ_ROOT"
exec cargo run --release --bin sparq -- bench "$@"
