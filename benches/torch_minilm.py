#!/usr/bin/env python3
"""PyTorch eager baseline for `sparq model-bench`: the same BERT encoder forward pass (with
mean pooling and L2 normalisation) in fp32 and fp16 on the GPU, timed with CUDA events.

    python3 benches/torch_minilm.py MODEL_DIR --batch 1,8,64 --seq 128 --out torch.json
"""
import argparse
import json

import torch
from transformers import AutoModel

def forward(model, ids, mask):
    h = model(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).to(h.dtype)
    pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", default="1,8,64")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    dev = torch.device("cuda")
    rows = []
    for dtype, name in [(torch.float32, "fp32"), (torch.float16, "fp16")]:
        model = AutoModel.from_pretrained(a.model, torch_dtype=dtype).to(dev).eval()
        for b in [int(x) for x in a.batch.split(",")]:
            ids = torch.zeros((b, a.seq), dtype=torch.long, device=dev)
            mask = torch.ones((b, a.seq), dtype=torch.long, device=dev)
            with torch.inference_mode():
                for _ in range(20):
                    forward(model, ids, mask)
                torch.cuda.synchronize()
                times = []
                for _ in range(a.iters):
                    s = torch.cuda.Event(enable_timing=True)
                    e = torch.cuda.Event(enable_timing=True)
                    s.record()
                    forward(model, ids, mask)
                    e.record()
                    e.synchronize()
                    times.append(s.elapsed_time(e) * 1000.0)
            times.sort()
            rows.append({"dtype": name, "batch": b, "seq": a.seq, "us": times[len(times) // 2],
                         "us_min": times[0]})
            print(f"torch {name} batch {b} seq {a.seq}: {times[len(times) // 2]:.0f} us")
    with open(a.out, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f)

if __name__ == "__main__":
    main()
