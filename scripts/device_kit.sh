#!/usr/bin/env bash
# Prepares here what a call on the lent GPU machine needs (../shared/gpu/GPU.md), in ignored
# folders that `run` carries (64 MiB per call in all, so carry one kit at a time):
#   gl     .gl/              the NVIDIA Vulkan loader debs (from ../shared/gpu/vulkan-debs)
#   gpu    .gpu/             release `sparq`, torch_baseline.py, torch_linear.py and the
#                            release test binaries named in $TESTS (e.g. TESTS="coop_gemm";
#                            none by default, to stay under the carry limit beside the model)
#   lvp    .dev-sched/       release `sparq`, the `schedule` test binary and Mesa's lavapipe with
#                            the libraries it needs (benches/schedule/h100.sh: GPU + lavapipe)
#   model  .dev-model/minilm all-MiniLM-L6-v2 with f16 weights, names unchanged so that both
#                            sparq and transformers load it (the f32 file is over the carry limit)
# Usage: bash scripts/device_kit.sh [gl] [gpu] [lvp] [model]   (no argument: all four)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
kits=("$@")
[[ ${#kits[@]} -gt 0 ]] || kits=(gl gpu lvp model)

# Release test binary of `tests/NAME.rs` (cargo prints the executables it built).
test_binary() {
    cargo test --release --no-run --test "$1" --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1" | tail -1
}

for kit in "${kits[@]}"; do
    case $kit in
    gl)
        mkdir -p .gl && cp ../shared/gpu/vulkan-debs/*.deb .gl/
        ;;
    gpu)
        cargo build --release --bin sparq
        mkdir -p .gpu && cp target/release/sparq .gpu/ && strip .gpu/sparq
        for t in ${TESTS:-}; do cp "$(test_binary "$t")" ".gpu/$t" && strip ".gpu/$t"; done
        cp ../shared/gpu/torch_baseline.py benches/torch_linear.py .gpu/
        ;;
    lvp)
        cargo build --release --bin sparq
        mkdir -p .dev-sched && cp target/release/sparq .dev-sched/
        cp "$(test_binary schedule)" .dev-sched/schedule-test
        # Symbols stripped: the kit and the tree must stay under the 64 MiB a call carries.
        strip .dev-sched/sparq .dev-sched/schedule-test
        lvp=$(find /usr/lib -name libvulkan_lvp.so | head -1)
        [[ -n $lvp ]] || { echo "no lavapipe here: apt-get install mesa-vulkan-drivers" >&2; exit 1; }
        k=$(mktemp -d)/lvpkit
        mkdir -p "$k/lib" "$k/sys" "$k/stdcxx"
        cp "$lvp" "$k/lib/"
        # Libraries the GPU machine's image may lack go to sys/ (copied there only if missing);
        # LLVM and Mesa's own always travel; the C++ runtime only where it is too old.
        ldd "$lvp" | awk '/=> \//{print $3}' | while read -r l; do
            case $(basename "$l") in
            libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*) ;;
            libstdc++*|libgcc_s*) cp -L "$l" "$k/stdcxx/" ;;
            libLLVM*|libvulkan*|libdrm*|libxcb*|libX*|libwayland*|libz3*) cp -L "$l" "$k/lib/" ;;
            *) cp -L "$l" "$k/sys/" ;;
            esac
        done
        tar -C "$(dirname "$k")" -cJf .dev-sched/lvpkit.tar.xz lvpkit
        rm -rf "$(dirname "$k")"
        ;;
    model)
        src=models/all-MiniLM-L6-v2
        [[ -f $src/model.safetensors ]] || bash scripts/setup.sh
        mkdir -p .dev-model/minilm
        cp "$src"/*.json "$src"/vocab.txt .dev-model/minilm/
        cp -r "$src/1_Pooling" .dev-model/minilm/ 2>/dev/null || true
        python3 - "$src/model.safetensors" .dev-model/minilm/model.safetensors <<'PY'
import json, struct, sys
from array import array
src, dst = sys.argv[1:]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
data = raw[8 + n:]
out_head, chunks, at = {}, [], 0
for name, t in head.items():
    if name == "__metadata__":
        out_head[name] = t
        continue
    a, b = t["data_offsets"]
    blob = data[a:b]
    if t["dtype"] == "F32":
        v = array("f"); v.frombytes(blob)
        blob = struct.pack(f"<{len(v)}e", *v)
        t = dict(t, dtype="F16")
    out_head[name] = dict(t, data_offsets=[at, at + len(blob)])
    chunks.append(blob); at += len(blob)
h = json.dumps(out_head).encode()
h += b" " * (-len(h) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for c in chunks: f.write(c)
PY
        ;;
    *)
        echo "unknown kit '$kit' (gl, gpu, lvp, model)" >&2
        exit 2
        ;;
    esac
    echo "kit $kit ready"
done
du -sh .gl .gpu .dev-sched .dev-model 2>/dev/null || true
