#!/usr/bin/env bash
# Binary and ternary GEMV sweep (issue 17): `sparq bench` at 8192² for the int8-activation
# GEMV of binaryg128, ternaryg128 and ternary16g160 (f16 as the baseline) at m = 1, 8, 16,
# first with the default tuning, then for each SPARQ_GEMV_R × SPARQ_GEMV_U (rows per team,
# blocks in flight per lane; RS, US, WGS override the lists), SPARQ_Q8=0 last (the float
# decoders, for comparison). Times include the quantization of x (one more dispatch).
# D: folder of the release `sparq` (default .gpu); OUT: where the table goes. Each run
# quantizes the weights on the CPU first (seconds at 8192²), so runs that would start after
# BUDGET seconds (default 100) are skipped, to stay within about two minutes (each run takes
# 25-30 s on the H200, most of it quantizing the three formats).
set -uo pipefail
D=${D:-.gpu}
OUT=${OUT:-/tmp/out}
FORMATS=${FORMATS:-binary,ternary,ternary16}
SHAPES=${SHAPES:-8192x8192}
MS=${MS:-1,8,16}
mkdir -p "$OUT"
log="$OUT/tune_low_bit.txt"
: > "$log"
bench() {
    timeout "$1" "$D/sparq" bench --adapter vulkan --formats "$2" --m "$MS" --shapes "$SHAPES" \
        --iters 30 2>/dev/null |
        awk -F'|' '/^\| (b|t|f)/ {printf "%-14s %-11s %4s %6s x%-6s %22s  min %10s  %11s  %9s\n", $2, $3, $4, $5, $6, $7, $8, $9, $11}' |
        tee -a "$log"
}
echo "== default" | tee -a "$log"
bench 60 "f16,$FORMATS"
budget=${BUDGET:-100}
for wg in ${WGS:-256}; do for r in ${RS:-2 4 8}; do for u in ${US:-1 2}; do
    if (( SECONDS > budget )); then echo "== skipped WG=$wg R=$r U=$u (budget)" | tee -a "$log"; continue; fi
    echo "== WG=$wg R=$r U=$u" | tee -a "$log"
    SPARQ_GEMV_WG=$wg SPARQ_GEMV_R=$r SPARQ_GEMV_U=$u bench 45 "$FORMATS"
done; done; done
if (( SECONDS <= budget )); then
    echo "== SPARQ_Q8=0 (float decoders)" | tee -a "$log"
    SPARQ_Q8=0 bench 45 "$FORMATS"
fi
echo "== ${SECONDS} s"
