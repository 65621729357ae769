"""PyTorch fp16 linear timings for the shapes `sparq bench` measures, as JSON for `--torch`.

Same method as sparq: CUDA events around batches of back-to-back calls, median over
batches, weights rotated through enough
copies that the working set exceeds the L2 cache.
Usage: python3 benches/torch_linear.py OUT.json [--shapes 4096x4096,...] [--m 1,8,32,256]
"""
import argparse, json, torch

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--shapes", default="4096x4096,11008x4096,4096x11008,14336x4096,8192x8192")
p.add_argument("--m", default="1,8,32,256")
a = p.parse_args()
dev = "cuda"


def bench(fns, batches=20, per_batch=20):
    """Median over batches of per_batch back-to-back calls, as sparq times its kernels."""
    for f in fns[:5]:
        f()
    torch.cuda.synchronize()
    events = []
    for b in range(batches):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        for i in range(per_batch):
            fns[(b * per_batch + i) % len(fns)]()
        e.record()
        events.append((s, e))
    torch.cuda.synchronize()
    ts = sorted(s.elapsed_time(e) * 1e3 / per_batch for s, e in events)
    return ts[len(ts) // 2]


rows = []
for shape in a.shapes.split(","):
    n, k = map(int, shape.lower().split("x"))
    copies = max(1, min(8, -(-(256 << 20) // (n * k * 2))))
    ws = [torch.randn(n, k, device=dev, dtype=torch.float16) for _ in range(copies)]
    for m in map(int, a.m.split(",")):
        x = torch.randn(m, k, device=dev, dtype=torch.float16)
        us = bench([lambda w=w: x @ w.t() for w in ws])
        rows.append({"m": m, "n": n, "k": k, "us": us})
        print(f"torch fp16 linear m={m} n={n} k={k}: {us:.1f} us, {n*k*2/us/1e3:.0f} GB/s of weights")
    del ws
json.dump({"device": torch.cuda.get_device_name(), "linear_fp16": rows}, open(a.out, "w"), indent=1)
