#!/usr/bin/env python3
"""What quantization and pruning cost in accuracy: packs all-MiniLM-L6-v2 with `sparq pack
--format F [--prune P] [--calibrate]` in several ways (no fine-tuning afterwards) and reports
the cosine of the embeddings of the fixture sentences to the PyTorch f32 embeddings in
tests/fixtures/minilm.json, and of 40 held-out everyday sentences (benches/heldout_sentences.txt,
none of them in the calibration text) to sparq's own f32 embeddings (which match PyTorch's to
1e-6); then the same for the digits classifier (tests/fixtures/digits_mlp.*), reporting its
test accuracy.

    python3 benches/prune_accuracy.py [--sparq target/release/sparq] [--adapter vulkan]
        [--formats ternary,binary]   (only the cases of these formats)

Needs the model in models/all-MiniLM-L6-v2 (scripts/setup.sh fetches it). Standard library only.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import tempfile

CASES = [
    ("f16", None), ("int8", None),
    ("int4", None), ("int4", "calibrate"), ("int4g32a", None), ("int4g32a", "calibrate"),
    ("int4g128", None), ("int4g128", "calibrate"),
    ("f16", "magnitude:0.1"), ("f16", "random:0.1"),
    ("f16", "magnitude:0.2"), ("f16", "random:0.2"),
    ("f16", "magnitude:0.3"), ("f16", "magnitude:0.3+calibrate"), ("f16", "global:0.3"),
    ("f16", "random:0.3"),
    ("f16", "magnitude:0.5"), ("f16", "magnitude:0.5+calibrate"), ("f16", "global:0.5"),
    ("f16", "random:0.5"),
    ("f16", "2:4"), ("f16", "2:4+calibrate"), ("int4", "2:4"), ("int4", "2:4+calibrate"),
    ("int8", "blocks:1x32:0.2"), ("int8", "blocks:1x32:0.5"),
    ("f16", "neurons:0.1"), ("f16", "neurons:0.3"),
    ("ternary", None), ("ternary", "calibrate"), ("ternaryg64", None),
    ("ternaryg64", "calibrate"), ("ternary16", None), ("ternary16", "calibrate"),
    ("binary", None), ("binarym", None), ("binaryg32m", None), ("binaryg32m", "calibrate"),
]


DIGITS = [
    ("f32", None), ("int8", None), ("int4", None),
    ("f32", "magnitude:0.5"), ("f32", "global:0.5"), ("f32", "random:0.5"),
    ("f32", "magnitude:0.8"), ("f32", "global:0.8"), ("f32", "random:0.8"),
    ("f32", "magnitude:0.9"), ("f32", "random:0.9"),
    ("f16", "2:4"), ("int4", "2:4"), ("int8", "blocks:1x16:0.5"),
    ("f32", "neurons:0.25"), ("f32", "neurons:0.5"),
    ("ternary", None), ("ternary16", None), ("binary", None), ("binaryg32m", None),
]


def pack_report(stderr):
    """(stored formats, % zeros, relative error) from what `sparq pack` prints; for neuron
    pruning, the share of weights removed and the error of the cut."""
    text = stderr.strip()
    line = text.splitlines()[-1]
    stored = re.search(r"weights as ([^;]+);", line).group(1)
    cut = re.search(r"\(([0-9.]+) % of the weights of the layers around them, ‖W − Ŵ‖/‖W‖ "
                    r"([0-9.]+)\)", text)
    if cut:
        return f"{stored}, smaller", cut.group(1), cut.group(2)
    return (stored,
            re.search(r"([0-9.]+) % of their weights zero", line).group(1),
            re.search(r"‖W − Ŵ‖/‖W‖ ([0-9.]+)", line).group(1))


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b))


def embed(a, path, sentences):
    out = subprocess.run([a.sparq, "embed", "--adapter", a.adapter, path, *sentences],
                         capture_output=True, text=True, check=True)
    return [json.loads(l) for l in out.stdout.splitlines() if l.strip()]


def pack_args(prune):
    """`sparq pack` arguments of a case's second field: a pruning spec, `calibrate`, or a
    pruning spec + `calibrate`."""
    if prune is None:
        return []
    spec, _, cal = prune.partition("+")
    args = ["--calibrate"] if "calibrate" in (spec, cal) else []
    return args if spec == "calibrate" else ["--prune", spec, *args]


def selected(a, cases):
    return [c for c in cases if a.only is None or c[0] in a.only]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparq", default="target/release/sparq")
    ap.add_argument("--adapter", default="best")
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--formats", help="comma-separated: run only the cases of these formats")
    a = ap.parse_args()
    a.only = set(a.formats.split(",")) if a.formats else None
    minilm(a)
    digits(a)


def minilm(a):
    fixture = json.load(open("tests/fixtures/minilm.json"))
    sentences, ref = fixture["sentences"], fixture["embeddings"]
    heldout = [l.strip() for l in open("benches/heldout_sentences.txt") if l.strip()]
    heldout_ref = embed(a, a.model, heldout)
    print("| values | pruning / rounding | stored as | zeros | ‖W − Ŵ‖/‖W‖ | fixture cosine min "
          "| mean | held-out cosine min | mean |")
    print("|---|---|---|--:|--:|--:|--:|--:|--:|")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(os.path.join(a.model, "tokenizer.json"), tmp)
        for fmt, prune in selected(a, CASES):
            path = os.path.join(tmp, "m.safetensors")
            cmd = [a.sparq, "pack", a.model, "--format", fmt, "-o", path, *pack_args(prune)]
            report = subprocess.run(cmd, capture_output=True, text=True, check=True)
            stored, zeros, error = pack_report(report.stderr)
            cs = [cosine(e, r) for e, r in zip(embed(a, path, sentences), ref)]
            hs = [cosine(e, r) for e, r in zip(embed(a, path, heldout), heldout_ref)]
            print(f"| {fmt} | {prune or '-'} | {stored} | {zeros} % | {error} | {min(cs):.4f} "
                  f"| {sum(cs) / len(cs):.4f} | {min(hs):.4f} | {sum(hs) / len(hs):.4f} |")


def digits(a):
    fixture = json.load(open("tests/fixtures/digits_mlp.json"))
    scale, labels = fixture["x_scale"], fixture["labels"]
    print(f"\ndigits MLP, {len(labels)} test images (accuracy of the f32 model in the training "
          f"script: {fixture['test_accuracy']:.4f})\n")
    print("| values | pruning | stored as | zeros | ‖W − Ŵ‖/‖W‖ | test accuracy |")
    print("|---|---|---|--:|--:|--:|")
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "x.json")
        json.dump({"features": [[v * scale for v in r] for r in fixture["x"]]}, open(inp, "w"))
        for fmt, prune in selected(a, DIGITS):
            path = os.path.join(tmp, "m.safetensors")
            cmd = [a.sparq, "pack", "tests/fixtures/digits_mlp.safetensors", "--format", fmt,
                   "-o", path, *pack_args(prune)]
            stored, zeros, error = pack_report(subprocess.run(
                cmd, capture_output=True, text=True, check=True).stderr)
            out = json.loads(subprocess.run(
                [a.sparq, "run", "--adapter", a.adapter, path, "--input", inp],
                capture_output=True, text=True, check=True).stdout)
            pred = [r["predictions"] for r in out["rows"]]  # the envelope (docs/output.md)
            acc = sum(p == l for p, l in zip(pred, labels)) / len(labels)
            print(f"| {fmt} | {prune or '-'} | {stored} | {zeros} % | {error} | {acc:.4f} |")


if __name__ == "__main__":
    main()
