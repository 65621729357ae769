#!/usr/bin/env bash
# One call on the lent GPU machine that times two builds of `sparq` against each other, so that
# a restructuring can show that speed did not move: the dense linear layers (`sparq bench`) and
# MiniLM forward passes (`sparq model-bench`), each run twice per build in the order
# before, after, before, after, so that drift of the machine shows up as a spread and not as a
# difference between the builds. Logs and JSON go under $OUT; a summary table is printed last.
#
# Kit: .gpu/sparq (after) and .gpu/sparq-before (before), both release builds, stripped and
#      xz-compressed (.gpu/*.xz: two binaries beside the f16 MiniLM exceed the 64 MiB a call
#      carries); .gl (the NVIDIA Vulkan loader) and .dev-model/minilm
#      (bash scripts/device_kit.sh gl model).
# Carry: .gl .gpu .dev-model
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
for z in .gpu/*.xz; do
    [[ -f $z ]] || continue
    python3 -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' "$z" "${z%.xz}"
    chmod +x "${z%.xz}"
done
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/nvidia-smi.txt"
SHAPES=${SHAPES:-8192x8192,4096x14336}
FORMATS=${FORMATS:-f16,int8,int4g32}
MS=${MS:-1,8,32}

for round in 1 2; do
    for build in before after; do
        bin=.gpu/sparq; [[ $build == before ]] && bin=.gpu/sparq-before
        tag=$build-$round
        t0=$SECONDS
        timeout 200 $bin bench --adapter vulkan --formats "$FORMATS" --m "$MS" --shapes "$SHAPES" \
            --json "$OUT/bench-$tag.json" > "$OUT/bench-$tag.md" 2> "$OUT/bench-$tag.err"
        echo "== bench $tag: rc=$? in $((SECONDS - t0)) s"
        t0=$SECONDS
        timeout 120 $bin model-bench --adapter vulkan .dev-model/minilm --formats f16,int4 \
            --batch 1,8,64 --iters 50 --json "$OUT/model-$tag.json" \
            > "$OUT/model-$tag.md" 2> "$OUT/model-$tag.err"
        echo "== model-bench $tag: rc=$? in $((SECONDS - t0)) s"
    done
done

# Summary: median GPU µs per case for each run, and after ÷ before of the per-build means.
python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, sys, os, statistics
out = sys.argv[1]
def load(kind, tag):
    p = os.path.join(out, f"{kind}-{tag}.json")
    try:
        j = json.load(open(p))
    except Exception:
        return {}
    rows = j["rows"] if isinstance(j, dict) and "rows" in j else j
    res = {}
    for r in rows:
        if kind == "bench":
            key = (r.get("format"), r.get("m"), f'{r.get("n")}x{r.get("k")}')
            us = r.get("gpu_us") or r.get("median_us") or r.get("us")
        else:
            key = (r.get("format"), r.get("batch"), r.get("seq"))
            us = r.get("gpu_us") or r.get("forward_us") or r.get("us")
        if us is not None:
            res[key] = us
    return res
for kind in ("bench", "model"):
    runs = {t: load(kind, t) for t in ("before-1", "after-1", "before-2", "after-2")}
    keys = sorted(set().union(*[set(r) for r in runs.values()]), key=str)
    print(f"\n### {kind}\n")
    print("| case | before 1 | after 1 | before 2 | after 2 | after ÷ before |")
    print("|---|--:|--:|--:|--:|--:|")
    ratios = []
    for k in keys:
        v = [runs[t].get(k) for t in runs]
        b = [x for x in (v[0], v[2]) if x]
        a = [x for x in (v[1], v[3]) if x]
        r = statistics.mean(a) / statistics.mean(b) if a and b else None
        if r: ratios.append(r)
        cells = " | ".join("-" if x is None else f"{x:.1f}" for x in v)
        print(f"| {' '.join(map(str, k))} | {cells} | {'-' if r is None else f'{r:.3f}'} |")
    if ratios:
        print(f"\ngeometric mean after ÷ before: {statistics.geometric_mean(ratios):.3f} over {len(ratios)} cases")
PY
