#!/usr/bin/env bash
# One device call of decoder measurements (docs/notes/gpu_runs.md): the transformers anchor
# (benches/torch_llm.py) and `sparq llm-bench` on random-weight models of published shapes,
# then, where the SmolLM2 GGUF is there ($GGUF), llm-bench on it in every format, its
# perplexity on the GPL per format and one streamed generation. Logs and JSON go to $OUT.
# Environment: D (folder of the release `sparq`, default .gpu), GGUF, STEPS (any of torch
# shapes real ppl gen; default all), SHAPES (default smollm2,llama-1b,llama-8b), PPL_FORMATS
# (the formats the ppl step measures), PPL_CALIBRATED (formats packed with `--calibrate` on the
# built-in sentences and then measured; none by default).
set -uo pipefail
D=${D:-.gpu}
OUT=${OUT:-/tmp/out}
STEPS=${STEPS:-"torch shapes real ppl gen"}
SHAPES=${SHAPES:-smollm2,llama-1b,llama-8b}
GGUF=${GGUF:-models/SmolLM2-135M-Instruct/model.gguf}
GPL=${GPL:-/usr/share/common-licenses/GPL-3}
mkdir -p "$OUT"
sparq="$D/sparq"
has() { [[ " $STEPS " == *" $1 "* ]]; }
step() { echo "== $* ($(date +%T))" >&2; }

if has torch; then
    step torch
    timeout 420 python3 benches/torch_llm.py --json "$OUT/torch_llm.json" > "$OUT/torch_llm.txt" 2> "$OUT/torch_llm.log"
    echo "torch rc=$?" >&2
fi
if has shapes; then
    step shapes
    timeout 420 "$sparq" llm-bench --adapter vulkan --shapes "$SHAPES" --formats f16,int8,int4 \
        --json "$OUT/llm_shapes.json" > "$OUT/llm_shapes.txt" 2> "$OUT/llm_shapes.log"
    echo "shapes rc=$?" >&2
fi
if [[ -f $GGUF ]]; then
    if has real; then
        step real
        timeout 300 "$sparq" llm-bench --adapter vulkan --model "$GGUF" --formats stored,f16,int8,int4 \
            --json "$OUT/llm_real.json" > "$OUT/llm_real.txt" 2> "$OUT/llm_real.log"
        echo "real rc=$?" >&2
    fi
    if has ppl; then
        step ppl
        for f in ${PPL_FORMATS:-stored f16 int8 int8g32 int4 int4g32m}; do
            fmt=(); [[ $f == stored ]] || fmt=(--format "$f")
            timeout 120 "$sparq" perplexity --adapter vulkan "$GGUF" "$GPL" --context 512 --output json "${fmt[@]}" \
                >> "$OUT/ppl.jsonl" 2>> "$OUT/ppl.log"
        done
        for f in ${PPL_CALIBRATED:-}; do
            packed=/tmp/calibrated-$f.safetensors
            echo "== $f calibrated" >> "$OUT/ppl.log"
            timeout 200 "$sparq" pack "$GGUF" --format "$f" --calibrate -o "$packed" >> "$OUT/ppl.log" 2>&1 &&
                timeout 120 "$sparq" perplexity --adapter vulkan "$packed" "$GPL" --context 512 --output json \
                    >> "$OUT/ppl.jsonl" 2>> "$OUT/ppl.log"
        done
    fi
    if has gen; then
        step gen
        timeout 60 "$sparq" generate --adapter vulkan "$GGUF" "The capital of France is" --max-tokens 64 \
            > "$OUT/generate.txt" 2>&1
        timeout 60 "$sparq" generate --adapter vulkan "$GGUF" --chat "Write a haiku about GPUs." --max-tokens 64 \
            >> "$OUT/generate.txt" 2>&1
    fi
fi
step done
cat "$OUT"/llm_shapes.txt "$OUT"/llm_real.txt 2>/dev/null | tail -60
cat "$OUT/ppl.jsonl" 2>/dev/null
tail -3 "$OUT/torch_llm.txt" 2>/dev/null
