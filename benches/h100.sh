#!/usr/bin/env bash
# Runs on the lent GPU machine (see ../shared/gpu/GPU.md): torch and sparq in the same call.
# Expects the release binary in .gpu/sparq and the Vulkan loader debs in .gl/.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/nvidia-smi.txt"
.gpu/sparq devices | tee "$OUT/devices.txt"
# TORCH_ARGS (e.g. "--m 1 --shapes 8192x8192") narrows the torch run; "$@" goes to sparq bench.
python3 benches/torch_linear.py "$OUT/torch.json" ${TORCH_ARGS:-} > "$OUT/torch.txt" 2>&1; tail -3 "$OUT/torch.txt"
[ -n "${SKIP_BASELINE:-}" ] || python3 .gpu/torch_baseline.py > "$OUT/torch_baseline.txt" 2>&1
.gpu/sparq bench --adapter vulkan --torch "$OUT/torch.json" --json "$OUT/sparq.json" "$@" 2>"$OUT/sparq.err" | tee "$OUT/sparq.md"
tail -3 "$OUT/sparq.err"
