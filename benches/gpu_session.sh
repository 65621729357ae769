#!/usr/bin/env bash
# One call on the lent GPU machine that re-measures what changed since the last one, each step
# under its own time limit so that a slow step cannot cost the others (logs and JSON in $OUT):
#   dense   PyTorch linear + `sparq bench` (every format, m = 1, 8, 32, 256)
#   sparse  `sparq bench --sparse`, then the 2:4 kernel with one row per item and CSR with
#           row-major x from global memory, for the comparison
#   sparse_blocks  BSR 1x32, 4x32 and 16x16 blocks at 8192²
#   sparse_tune  the sparse kernels' tuning knobs swept at 8192² (m = 1)
#   coop_tests  the tensor-core GEMM's tests (kit built with TESTS=coop_gemm)
#   gpu_tests  every release test binary in the kit (TESTS="..."), SPARQ_TEST_ADAPTERS=vulkan
#           (TEST_LIMIT seconds each, default 120; also for coop_tests)
#   low_bit  binary and ternary against f16 / int4 and PyTorch (m = 1, 8, 16, 32; 8192² and
#           the LLM shapes), then benches/tune_low_bit.sh (their GEMV's launch shapes)
#   low_bit_tune  benches/tune_low_bit.sh alone (BUDGET, RS, US as there)
#   distill  MiniLM distillation: the step beside PyTorch's (benches/torch_distill.py), then
#           3-layer, 2:4 and 50 % magnitude students of SOTU (.gpu/sotu.tar.xz: tar of data/sotu)
#   model   PyTorch MiniLM + `sparq model-bench` (batch 1, 8, 64; sequence 128)
#   model_check  `sparq embed` per weight format against the PyTorch fixture (cosine)
#   plots   the three plots of BENCHMARKS.md (dense, sparse, MiniLM; a reduced dense set)
#   model_pruned  MiniLM packed 2:4 (int4, f16), 70 % magnitude (CSR) and with half its FFN
#           neurons, each timed at batch 8 and 64 (after `model`, for the PyTorch figures)
# Carry: .gl .gpu .dev-model (bash scripts/device_kit.sh gl gpu model; about 60 MiB).
# A call may run 600 s: run the default `STEPS="sparse model"` in one call, then `STEPS=dense`
# and `STEPS="model model_pruned"` in the next ones (the machine stays warm a short while).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
S=.gpu/sparq
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/nvidia-smi.txt"
$S devices > "$OUT/devices.txt" 2>&1; grep -E '^\[' "$OUT/devices.txt"

# DEADLINE (seconds from the start) shortens the last steps' limits, so that the archive below
# is always written before the call's own limit.
DEADLINE=${DEADLINE:-100000}
step() { # name limit command...
    local name=$1 limit=$2; shift 2
    local left=$((DEADLINE - SECONDS))
    ((left < limit)) && limit=$left
    if ((limit < 10)); then
        echo "== $name: skipped (deadline)"
        return
    fi
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.md" 2> "$OUT/$name.err"
    echo "== $name: rc=$? in $((SECONDS - t0)) s"
}

for s in ${STEPS:-sparse model}; do
    case $s in
    dense)
        step torch_linear 90 python3 benches/torch_linear.py "$OUT/torch.json" --m 1,8,32,256
        step dense 420 $S bench --adapter vulkan --torch "$OUT/torch.json" --json "$OUT/dense.json" \
            --plot "$OUT/dense.svg"
        ;;
    plots)
        # The plots of BENCHMARKS.md in one call: a reduced dense set (the LLM shapes at
        # m = 1, 8, 32 in f16, int8, int4g32) beside PyTorch, the sparse sweep at 8192², and
        # MiniLM at batch 1-256 beside PyTorch.
        step torch_linear 90 python3 benches/torch_linear.py "$OUT/torch.json" --m 1,8,32 \
            --shapes 4096x4096,14336x4096,4096x14336,8192x8192
        step dense 150 $S bench --adapter vulkan --torch "$OUT/torch.json" --json "$OUT/dense.json" \
            --plot "$OUT/dense.svg" --formats f16,int8,int4g32 --m 1,8,32 \
            --shapes 4096x4096,14336x4096,4096x14336,8192x8192
        step sparse 200 $S bench --adapter vulkan --sparse --shapes 8192x8192 \
            --json "$OUT/sparse.json" --plot "$OUT/sparse.svg"
        step torch_minilm 120 python3 benches/torch_minilm.py .dev-model/minilm \
            --batch 1,8,64,256 --seq 128 --out "$OUT/torch_minilm.json"
        step model 150 $S model-bench --adapter vulkan .dev-model/minilm --batch 1,8,64,256 \
            --torch "$OUT/torch_minilm.json" --json "$OUT/model.json" --plot "$OUT/model.svg"
        ;;
    sparse)
        step sparse 320 $S bench --adapter vulkan --sparse --json "$OUT/sparse.json" \
            --plot "$OUT/sparse.svg"
        SPARQ_SPARSE_24_ROWS=1 SPARQ_SPARSE_XT_FROM=off SPARQ_SPARSE_XSM=off step sparse_before 60 \
            $S bench --adapter vulkan --sparse --shapes 8192x8192 --sparsities 0.9 \
            --json "$OUT/sparse_before.json"
        ;;
    distill)
        # Issue 16: the MiniLM distillation step beside PyTorch's at 64 × 128 tokens, every
        # token real (lines of 150 words, truncated to 128 tokens), then students of SOTU
        # sentences (.gpu/sotu.tar.xz) for as many steps as DISTILL_SECONDS (each) allow at
        # the measured step time, each student's forward speed beside the teacher's.
        mkdir -p /tmp/data && tar -C /tmp/data -xJf .gpu/sotu.tar.xz
        python3 - /tmp/data/sotu /tmp/long.txt <<'PY'
import pathlib, sys
words = " ".join(p.read_text() for p in sorted(pathlib.Path(sys.argv[1]).glob("*.txt"))).split()
open(sys.argv[2], "w").write("\n".join(" ".join(words[i:i + 150]) for i in range(0, 150 * 2000, 150)))
PY
        step torch_distill 150 python3 benches/torch_distill.py .dev-model/minilm "$OUT/torch_distill.json"
        step distill_speed 120 $S distill --adapter vulkan .dev-model/minilm --student layers:3 \
            --data /tmp/long.txt --steps 40 --batch 64 --max-seq 128 --held-out-sentences 64 \
            --eval-every 0 -o /tmp/speed.safetensors
        per_step=$(grep -oE '[0-9]+ steps in [0-9.]+ s' "$OUT/distill_speed.md" | awk '{print $4 / $1}')
        steps=$(python3 -c "print(max(50, min(${DISTILL_MAX_STEPS:-4000}, int(${DISTILL_SECONDS:-100} / (${per_step:-1} * 0.7)))))")
        echo "== distill: ${per_step:-?} s a 64 × 128 step, $steps steps a student"
        step model_teacher 60 $S model-bench --adapter vulkan .dev-model/minilm --batch 64 --seq 128 \
            --formats f32,f16 --json "$OUT/model_teacher.json"
        for spec in ${DISTILL_SPECS:-layers:3 prune:2:4 prune:magnitude:0.5}; do
            n=${spec//:/_}; n=${n//./}
            st=$steps; [[ $spec == layers:3 ]] || st=$((steps / 2))
            step "distill_$n" $((${DISTILL_SECONDS:-100} + 90)) $S distill --adapter vulkan \
                .dev-model/minilm --student "$spec" --data /tmp/data/sotu --steps "$st" \
                --batch 64 --max-seq 128 -o "/tmp/$n.safetensors"
            [[ $spec == layers:3 ]] && step "model_$n" 60 $S model-bench --adapter vulkan \
                "/tmp/$n.safetensors" --batch 64 --seq 128 --formats f32,f16 --json "$OUT/model_$n.json"
        done
        ;;
    coop_tests)
        # The tensor-core GEMM's tests (CI has no adapter with cooperative matrices).
        [[ -x .gpu/coop_gemm ]] && step coop_tests "${TEST_LIMIT:-120}" .gpu/coop_gemm --test-threads 1
        ;;
    gpu_tests)
        for t in ${TESTS:-}; do
            [[ -x .gpu/$t ]] && step "test_$t" "${TEST_LIMIT:-120}" env SPARQ_TEST_ADAPTERS=vulkan ".gpu/$t" --test-threads 1
        done
        ;;
    low_bit)
        shapes=8192x8192,4096x4096,14336x4096,4096x14336
        step torch_low_bit 90 python3 benches/torch_linear.py "$OUT/torch_low_bit.json" \
            --m 1,8,16,32 --shapes $shapes
        step low_bit 200 $S bench --adapter vulkan --torch "$OUT/torch_low_bit.json" \
            --json "$OUT/low_bit.json" --plot "$OUT/low_bit.svg" --m 1,8,16,32 --shapes $shapes \
            --formats f16,int4g32,ternary,ternaryg256,ternary16,binary,binarym,binaryg32m
        step tune_low_bit $((${BUDGET:-100} + 60)) bash benches/tune_low_bit.sh
        ;;
    low_bit_tune)
        step tune_low_bit $((${BUDGET:-100} + 60)) bash benches/tune_low_bit.sh
        ;;
    sparse_blocks)
        step sparse_blocks 120 $S bench --adapter vulkan --sparse --shapes 8192x8192 \
            --sparsities 0.5,0.9 --bsr-blocks 1x32,4x32,16x16 --json "$OUT/sparse_blocks.json"
        ;;
    sparse_tune)
        step sparse_tune 150 $S bench --adapter vulkan --sparse-tune --shapes 8192x8192 \
            --m 1 --json "$OUT/sparse_tune.json"
        ;;
    model)
        step torch_minilm 120 python3 benches/torch_minilm.py .dev-model/minilm \
            --batch 1,8,64 --seq 128 --out "$OUT/torch_minilm.json"
        step model 150 $S model-bench --adapter vulkan .dev-model/minilm \
            --torch "$OUT/torch_minilm.json" --json "$OUT/model.json" --plot "$OUT/model.svg"
        # Attention without key splitting (b = 1) and with one query per invocation (b = 64).
        SPARQ_ATTENTION_SPLIT=1 SPARQ_ATTENTION_QPI=1 step model_attention_before 60 \
            $S model-bench --adapter vulkan .dev-model/minilm --formats f16 --batch 1,64
        ;;
    model_check)
        step model_check 60 python3 benches/check_minilm.py $S .dev-model/minilm
        ;;
    model_pruned)
        # Pruned MiniLMs packed here (the binary runs on this machine), timed at batch 8 and 64.
        P=/tmp/pruned; mkdir -p $P; cp .dev-model/minilm/tokenizer.json $P/
        for spec in "int4 2:4" "f16 2:4" "f16 magnitude:0.7" "f16 neurons:0.5"; do
            set -- $spec
            f=$P/$(echo "$1-$2" | tr ':' '_').safetensors
            $S pack .dev-model/minilm --format "$1" --prune "$2" -o "$f" 2>> "$OUT/pack.err"
        done
        step model_pruned 150 bash -c "for f in $P/*.safetensors; do echo \$f; \
            $S model-bench --adapter vulkan \$f --batch 8,64 --iters 50 --torch $OUT/torch_minilm.json; done"
        ;;
    *) echo "unknown step $s" ;;
    esac
done
tail -n 3 "$OUT"/*.err
# At most 8 files come back: everything goes in one archive, the summaries stay beside it.
tar -C "$OUT" -czf /tmp/results.tgz . && mv /tmp/results.tgz "$OUT/" &&
    find "$OUT" -type f ! -name results.tgz ! -name model.md ! -name model_pruned.md \
        ! -name sparse.md ! -name sparse_tune.md ! -name model_check.md ! -name '*.svg' \
        ! -name dense.md -delete
