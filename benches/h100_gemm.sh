#!/usr/bin/env bash
# GEMM-shape run on the lent GPU machine (see ../shared/gpu/GPU.md): the tensor-core test,
# PyTorch anchors and `sparq gemm` in one call. Expects the release binaries (sparq and the
# coop_gemm and dp4a_gemm test binaries), torch_linear.py and the loader debs under $D (default .dev-tcore).
set -uo pipefail
D=${D:-.dev-tcore}
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/nvidia-smi.txt"
"$D/sparq" devices > "$OUT/devices.txt" 2>&1
SPARQ_TEST_ADAPTERS=vulkan timeout 150 "$D/coop_gemm" --test-threads=1 > "$OUT/test.txt" 2>&1
echo "coop_gemm test rc=$?"; grep -E "test result|panicked|FAILED" "$OUT/test.txt" | head -5
SPARQ_TEST_ADAPTERS=vulkan timeout 100 "$D/dp4a_gemm" --test-threads=1 > "$OUT/test_dp4a.txt" 2>&1
echo "dp4a_gemm test rc=$?"; grep -E "test result|panicked|FAILED" "$OUT/test_dp4a.txt" | head -5
python3 "$D/torch_linear.py" "$OUT/torch.json" --shapes 4096x4096,8192x8192 \
  --m ${TORCH_M:-8,16,32,48,64,96,128,256,512,1024,2048,4096,8192} > "$OUT/torch.txt" 2>&1
python3 - > "$OUT/torch_int_mm.txt" 2>&1 <<'PY'
import torch
def t(f, n=20):
    for _ in range(3): f()
    s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(); s.record()
    for _ in range(n): f()
    e.record(); torch.cuda.synchronize(); return s.elapsed_time(e) / n * 1e3
for n in (4096, 8192):
    a = torch.randn(n, n, device="cuda", dtype=torch.float16); b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    us = t(lambda: a @ b); print(f"torch fp16 gemm {n}^3: {us:.1f} us {2*n**3/us/1e6:.0f} TFLOP/s")
    ai = torch.randint(-8, 8, (n, n), device="cuda", dtype=torch.int8); bi = torch.randint(-8, 8, (n, n), device="cuda", dtype=torch.int8)
    us = t(lambda: torch._int_mm(ai, bi.t().contiguous().t())); print(f"torch int8 _int_mm {n}^3: {us:.1f} us {2*n**3/us/1e6:.0f} TOP/s")
PY
cat "$OUT/torch_int_mm.txt"
SPARQ_WARMUP_MS=${SPARQ_WARMUP_MS:-100} timeout ${GEMM_TIMEOUT:-360} "$D/sparq" gemm --adapter vulkan \
  --torch "$OUT/torch.json" --json "$OUT/gemm.json" "$@" > "$OUT/gemm.md" 2> "$OUT/gemm.err"
echo "sparq gemm rc=$?"; tail -3 "$OUT/gemm.err"
cat "$OUT/gemm.md"; cat "$OUT/torch_int_mm.txt"
