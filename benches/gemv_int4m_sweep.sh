#!/usr/bin/env bash
# GEMV shapes for the GGUF group formats at a decode batch (issue 13's int4g32m anomaly):
# `sparq bench` at m = 1, 8 for int4g32m, int4g32 and f16 at SmolLM2's and Llama-3-8B's layer
# shapes, with the default GEMV tuning and then each SPARQ_GEMV_R × SPARQ_GEMV_U × XSTAGE.
# D: folder of the release `sparq` (default .gpu); OUT: where the tables go.
set -uo pipefail
D=${D:-.gpu}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
args=(bench --adapter vulkan --formats int4g32m,int4g32,f16 --m 1,8 --shapes 1536x576,576x1536,4096x4096,14336x4096 --iters 30)
echo "== default" | tee -a "$OUT/sweep.txt"
timeout 120 "$D/sparq" "${args[@]}" 2>/dev/null | grep -E "^\|" >> "$OUT/sweep.txt"
for r in 1 2 4; do for u in 1 2; do for x in 0 1; do
    echo "== R=$r U=$u XSTAGE=$x" | tee -a "$OUT/sweep.txt"
    SPARQ_GEMV_R=$r SPARQ_GEMV_U=$u SPARQ_GEMV_XSTAGE=$x timeout 60 "$D/sparq" bench --adapter vulkan \
        --formats int4g32m --m 8 --shapes 1536x576,576x1536,4096x4096,14336x4096 --iters 30 2>/dev/null |
        grep -E "^\|" >> "$OUT/sweep.txt"
done; done; done
cat "$OUT/sweep.txt" | head -120
