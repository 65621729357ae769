#!/usr/bin/env bash
# Multi-GPU data-parallel scaling (issue 7), on nvidia-h200-x2 or -x4: MiniLM (f16 weights,
# batches of 256, 1024 and 4096 sentences) and a chain of int4 layers over 2 (and 4) GPUs,
# each GPU alone and all together, with the split and where the time went. Every NVIDIA GPU
# is its own Vulkan adapter; NVLink multicast stays off (nothing here asks for it).
# Carry: .gl .gpu .dev-model (bash scripts/device_kit.sh gl gpu model).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
S=.gpu/sparq
nvidia-smi --query-gpu=index,name,clocks.sm,clocks.mem --format=csv > "$OUT/nvidia-smi.txt"
nvidia-smi topo -m > "$OUT/topo.txt" 2>&1
$S devices > "$OUT/devices.txt" 2>&1
# Indices of the discrete Vulkan adapters, in order.
ids=$(awk '/^\[[0-9]+\]/ {i = substr($1, 2, length($1) - 2)} /backend Vulkan \| type DiscreteGpu/ {print i}' "$OUT/devices.txt")
echo "Vulkan GPUs: $(echo $ids)"
for n in 2 4; do
    set -- $ids
    [ "$#" -ge "$n" ] || continue
    a=$(echo $ids | tr ' ' '\n' | head -n "$n" | paste -sd,)
    t0=$SECONDS
    timeout 240 $S bench --adapters "$a" --model .dev-model/minilm --formats f16 --m 256,1024,4096 \
        --json "$OUT/minilm_x$n.json" > "$OUT/minilm_x$n.md" 2> "$OUT/minilm_x$n.err"
    echo "== MiniLM on $n GPUs ($a): rc=$? in $((SECONDS - t0)) s"
    t0=$SECONDS
    timeout 90 $S bench --adapters "$a" --formats int4,int4,int4 --shapes 4096x4096 --m 32768 \
        --json "$OUT/int4_x$n.json" > "$OUT/int4_x$n.md" 2> "$OUT/int4_x$n.err"
    echo "== int4 chain on $n GPUs ($a): rc=$? in $((SECONDS - t0)) s"
done
grep -h -A2 "together rows/s" "$OUT"/*.md
