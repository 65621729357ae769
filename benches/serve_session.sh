#!/usr/bin/env bash
# One device call of server measurements (issue 15; docs/notes/gpu_runs.md): the engine
# offline (`model-bench` for MiniLM, `llm-bench` for the decoders) at the batch sizes the load
# reaches, then `sparq serve` with MiniLM, SmolLM2 and a random-weight Llama-1B shape, driven
# by `sparq serve-bench` at several concurrency levels. Logs and JSON go to $OUT.
# Environment: D (folder of the release `sparq`, default .gpu), MINILM (model dir), GGUF
# (SmolLM2), LEVELS (concurrency levels), SECS (seconds per level), STEPS (any of offline-minilm
# offline-smollm2 offline-llama1b serve embed-window0; default all).
set -uo pipefail
D=${D:-.gpu}
OUT=${OUT:-/tmp/out}
MINILM=${MINILM:-.dev-model/minilm}
GGUF=${GGUF:-models/SmolLM2-135M-Instruct/model.gguf}
LEVELS=${LEVELS:-1,8,32,128}
STEPS=${STEPS:-"offline-minilm offline-smollm2 offline-llama1b serve embed-window0"}
PORT=${PORT:-8089}
SECS=${SECS:-10}
mkdir -p "$OUT"
sparq="$D/sparq"
has() { [[ " $STEPS " == *" $1 "* ]]; }
step() { echo "== $* ($(date +%T))" >&2; }
# GET a URL to stdout, failing on a status >= 400 (python3: the machine may lack curl).
get() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }

if has offline-minilm; then
    step offline minilm
    timeout 240 "$sparq" model-bench --adapter vulkan "$MINILM" --formats f16 --batch "$LEVELS" --seq 32 --iters 30 \
        --json "$OUT/offline_minilm.json" > "$OUT/offline_minilm.txt" 2> "$OUT/offline_minilm.log"
    echo "offline minilm rc=$?" >&2
fi
if has offline-smollm2; then
    step offline smollm2
    timeout 240 "$sparq" llm-bench --adapter vulkan --model "$GGUF" --formats stored --batch "$LEVELS" \
        --context 128 --prompt 32 --json "$OUT/offline_smollm2.json" > "$OUT/offline_smollm2.txt" 2> "$OUT/offline_smollm2.log"
    echo "offline smollm2 rc=$?" >&2
fi
if has offline-llama1b; then
    step offline llama-1b
    timeout 240 "$sparq" llm-bench --adapter vulkan --shapes llama-1b --formats int4g32m --batch "$LEVELS" \
        --context 128 --prompt 32 --json "$OUT/offline_llama1b.json" > "$OUT/offline_llama1b.txt" 2> "$OUT/offline_llama1b.log"
    echo "offline llama-1b rc=$?" >&2
fi

if has serve; then
    step serve
    "$sparq" serve --adapter vulkan --port "$PORT" --model minilm="$MINILM" --model smollm2="$GGUF" \
        --model llama1b=random:llama-1b:int4g32m --tokenizer llama1b="$GGUF" \
        --kv-tokens 65536 --max-running 128 --max-waiting 1024 \
        > "$OUT/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 240); do
        get "http://127.0.0.1:$PORT/health" > /dev/null 2>&1 && break
        sleep 0.5
    done
    get "http://127.0.0.1:$PORT/v1/models" > "$OUT/models.json"
    url="http://127.0.0.1:$PORT"
    step serve-bench embeddings
    timeout 180 "$sparq" serve-bench --url "$url" --kind embeddings --model minilm --concurrency "$LEVELS" \
        --duration "$SECS" --json "$OUT/serve_minilm.json" > "$OUT/serve_minilm.txt" 2>&1
    for m in smollm2 llama1b; do
        step serve-bench "$m"
        timeout 200 "$sparq" serve-bench --url "$url" --kind completions --model "$m" --concurrency "$LEVELS" \
            --duration "$SECS" --max-tokens 128 --json "$OUT/serve_$m.json" > "$OUT/serve_$m.txt" 2>&1
    done
    get "$url/metrics" > "$OUT/metrics.txt"
    kill -TERM "$pid"
    wait "$pid"
    echo "serve exit=$?" >&2
fi
if has embed-window0; then
    step embed-window0
    "$sparq" serve --adapter vulkan --port "$PORT" --model minilm="$MINILM" --embed-window-ms 0 \
        > "$OUT/serve_window0.log" 2>&1 &
    pid=$!
    for _ in $(seq 240); do
        get "http://127.0.0.1:$PORT/health" > /dev/null 2>&1 && break
        sleep 0.5
    done
    timeout 180 "$sparq" serve-bench --url "http://127.0.0.1:$PORT" --kind embeddings --model minilm \
        --concurrency "$LEVELS" --duration "$SECS" --json "$OUT/serve_minilm_window0.json" \
        > "$OUT/serve_minilm_window0.txt" 2>&1
    kill -TERM "$pid"
    wait "$pid"
    echo "serve (window 0) exit=$?" >&2
fi
step done
cat "$OUT"/offline_*.txt "$OUT"/serve_*.txt 2>/dev/null | grep -v "^$" | tail -90
