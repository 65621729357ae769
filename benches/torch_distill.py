"""Anchor: the MiniLM distillation step of `sparq distill` in PyTorch, on the same GPU: a
student of layers 0, 2, 4 of all-MiniLM-L6-v2 (embeddings frozen), mean pooling and L2
normalisation, the cosine loss to fixed teacher vectors, backward and AdamW (weight decay
0.01, global-norm clipping at 1.0), batch x seq tokens all real. Three ways a speed-minded
user runs it: fp32 (TF32 off, as sparq's f32 kernels), fp32 with TF32 matmuls, and bf16
autocast (AMP); each eager with SDPA attention. Steps are timed with CUDA events, the median
of --steps after warm-up.
usage: torch_distill.py MODEL_DIR OUT.json [--batch 64] [--seq 128] [--steps 30]"""
import argparse, copy, json, torch
from transformers import AutoModel

ap = argparse.ArgumentParser(); ap.add_argument("model"); ap.add_argument("out")
ap.add_argument("--batch", type=int, default=64); ap.add_argument("--seq", type=int, default=128)
ap.add_argument("--steps", type=int, default=30)
a = ap.parse_args(); dev = "cuda"
teacher = AutoModel.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation="sdpa")
rows = []
for name, tf32, amp in [("fp32", False, False), ("fp32+tf32", True, False), ("bf16-amp", False, True)]:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    student = copy.deepcopy(teacher)
    student.encoder.layer = torch.nn.ModuleList([student.encoder.layer[i] for i in (0, 2, 4)])
    student.config.num_hidden_layers = 3
    student = student.to(dev).train()
    for p in student.embeddings.parameters():
        p.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() == 2]
    rest = [p for p in params if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": rest, "weight_decay": 0.0}], lr=2e-4, fused=True)
    ids = torch.randint(1000, 29000, (a.batch, a.seq), device=dev)
    mask = torch.ones((a.batch, a.seq), dtype=torch.long, device=dev)
    target = torch.nn.functional.normalize(torch.randn(a.batch, 384, device=dev), dim=1)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            h = student(input_ids=ids, attention_mask=mask).last_hidden_state
        h = h.float(); m = mask.unsqueeze(-1).to(h.dtype)
        v = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)
        loss = (1 - (v * target).sum(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    for _ in range(5):
        step()
    torch.cuda.synchronize(); ts = []
    for _ in range(a.steps):
        e0 = torch.cuda.Event(enable_timing=True); e1 = torch.cuda.Event(enable_timing=True)
        e0.record(); loss = step(); e1.record(); e1.synchronize()
        ts.append(e0.elapsed_time(e1) * 1e3)
    ts.sort(); us = ts[len(ts) // 2]
    tokens = a.batch * a.seq
    rows.append({"mode": name, "batch": a.batch, "seq": a.seq, "us": us, "us_min": ts[0],
                 "tokens_per_s": tokens * 1e6 / us, "loss": float(loss)})
    print(f"torch distill step {name} batch {a.batch} seq {a.seq}: {us:.0f} us "
          f"(min {ts[0]:.0f}) = {tokens * 1e6 / us:.0f} tokens/s")
    del student, opt
    torch.cuda.empty_cache()
json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows},
          open(a.out, "w"), indent=1)
