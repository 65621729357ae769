#!/usr/bin/env python3
"""Trains the MLP classifier fixture on scikit-learn's bundled 8×8 digits (no download).

Writes tests/fixtures/digits_mlp.safetensors (weights, with sparq's architecture JSON in the
metadata, so the file describes itself) and tests/fixtures/digits_mlp.json (the held-out test
set, the logits computed here in float64, the predictions and the test accuracy), which
tests/model_mlp.rs checks sparq against. Needs scikit-learn and numpy:

    python3 scripts/train_digits.py
"""
import json
import os
import struct

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

HIDDEN = 64

def save_safetensors(path, tensors, metadata):
    """Minimal safetensors writer (f32, little-endian), tensors in name order."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4")
        raw = data.tobytes()
        header[name] = {"dtype": "F32", "shape": list(data.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)

def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y)
    clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="relu", max_iter=600,
                        random_state=0)
    clf.fit(x_train, y_train)
    accuracy = float(clf.score(x_test, y_test))
    # sklearn keeps (in × out) matrices; sparq's layers are (out × in).
    w = [c.T.astype(np.float32) for c in clf.coefs_]
    b = [i.astype(np.float32) for i in clf.intercepts_]
    tensors = {}
    for i, (wi, bi) in enumerate(zip(w, b)):
        tensors[f"layers.{i}.weight"] = wi
        tensors[f"layers.{i}.bias"] = bi
    config = {"architecture": "mlp", "sizes": [64, HIDDEN, 10], "activation": "relu"}
    fixtures = os.path.join(root, "tests", "fixtures")
    save_safetensors(os.path.join(fixtures, "digits_mlp.safetensors"), tensors,
                     {"sparq.config": json.dumps(config), "format": "pt"})
    # Logits of the stored (f32) weights in float64.
    h = np.maximum(x_test @ w[0].astype(np.float64).T + b[0], 0.0)
    logits = h @ w[1].astype(np.float64).T + b[1]
    pred = logits.argmax(axis=1)
    assert (pred == clf.predict(x_test)).all()
    out = {
        "dataset": "sklearn.datasets.load_digits, features / 16, 20% stratified test split (seed 0)",
        "test_accuracy": accuracy,
        "x": [[round(v * 16) for v in row] for row in x_test.tolist()],
        "x_scale": 1.0 / 16.0,
        "labels": y_test.tolist(),
        "predictions": pred.tolist(),
        "logits": [[float(f"{v:.9g}") for v in row] for row in logits.tolist()],
    }
    with open(os.path.join(fixtures, "digits_mlp.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"train {len(x_train)} / test {len(x_test)} samples; test accuracy {accuracy:.4f}")

if __name__ == "__main__":
    main()
