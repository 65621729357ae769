"""Cosine of `sparq embed` against the PyTorch embeddings in tests/fixtures/minilm.json.

Usage: python3 benches/check_minilm.py SPARQ MODEL_DIR [FORMAT ...]
Prints one line per weight format: the smallest cosine over the fixture sentences. Used on the
lent GPU machine, whose kernels (tensor cores, fused epilogues) CI cannot run.
"""
import json
import math
import subprocess
import sys

sparq, model = sys.argv[1], sys.argv[2]
formats = sys.argv[3:] or ["f32", "f16", "int8", "int4"]
fix = json.load(open("tests/fixtures/minilm.json"))
for fmt in formats:
    out = subprocess.run(
        [sparq, "embed", "--adapter", "vulkan", model, "--format", fmt, *fix["sentences"]],
        capture_output=True, text=True, check=True,
    ).stdout
    got = [json.loads(line) for line in out.splitlines() if line.startswith("[")]
    cos = []
    for a, b in zip(got, fix["embeddings"]):
        dot = sum(x * y for x, y in zip(a, b))
        cos.append(dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)))
    print(f"{fmt}: {len(got)} sentences, min cosine to PyTorch f32 {min(cos):.7f}")
