"""Hugging Face transformers anchor for `sparq llm-bench`: Llama-family prefill and decode speed in fp16.

What it measures (issue 13, speed section), on the same GPU and in the same device call as sparq:
  * models built from their configs with random weights (no downloads), fp16, SDPA attention:
      smollm2   SmolLM2-135M shape  (49152 vocab, 576 hidden, 30 layers, 9/3 heads of 64, FFN 1536, tied)
      llama-1b  Llama-3.2-1B shape  (128256 vocab, 2048 hidden, 16 layers, 32/8 heads of 64, FFN 8192, tied)
      llama-8b  Llama-3-8B shape    (128256 vocab, 4096 hidden, 32 layers, 32/8 heads of 128, FFN 14336)
    plain RoPE (no rope scaling) so the math matches sparq's.
  * prefill: one 512-token prompt at batch 1 (`--prompt`), logits of the last position only, tokens/s.
  * decode: one new token per sequence at batch 1, 8, 32, 64 (`--batch`) with `context` positions already in
    the KV cache (512 and 4096, `--context`; filled once by an untimed chunked prefill), ms per step and
    tokens/s. A step is the forward pass plus a greedy argmax fed back as the next input token. Every timed
    step is the step at position `context` (the cache's write counters are reset before each step), so the
    work is the same each step and the cache never runs past its end.

The fastest path transformers offers is used, with fallbacks; each row says which one ran (`mode`):
  "static+cudagraph"  StaticCache (max_cache_len = context + 1) and one whole step (counter reset, forward,
                      argmax, feed-back) captured in a torch.cuda.CUDAGraph and replayed; the replay's logits
                      are checked against an eager step before timing (`graph_check_max_abs`).
  "static+compile"    only with `--compile`: torch.compile(mode="reduce-overhead") of the forward instead of
                      the manual capture.
  "static eager"      StaticCache, no graph.
  "dynamic eager"     DynamicCache (transformers' default), no graph.
Prefill also records a "dynamic eager" row beside the best mode (that is what `generate` does by default).

Timing: CUDA events around each step (they include any host-launch gaps), median over `--iters` steps
after `--warmup`; `ms_per_step_wall` is host wall time over the same steps. On CPU perf_counter is used.
Cases that would not fit in memory are skipped (`"skipped": reason`); an out-of-memory error is recorded
the same way and the run goes on.

Run (on the device, beside `sparq llm-bench`):
    python3 benches/torch_llm.py --json out.json
    python3 benches/torch_llm.py --quick --json out.json            # smollm2 + llama-1b, batch 1/32, ctx 512
    python3 benches/torch_llm.py --models llama-8b --batch 1,32 --context 4096 --json out.json
CPU smoke test (no GPU): python3 benches/torch_llm.py --device cpu --tiny --json /tmp/t.json

JSON: {"gpu", "torch", "transformers", "args", "rows": [{model, phase, batch, context, mode, ms_per_step,
tokens_per_s, weight_bytes, kv_bytes_per_step, ...}]}. weight_bytes = parameter bytes read per step (every
unique parameter, less an untied input-embedding table, of which only `batch` rows are gathered);
param_bytes = all parameters. kv_bytes_per_step = K and V bytes the step's attention touches (decode: the
context plus the new position, which is exactly the static cache's length; prefill: the prompt's K/V
written).
"""
import argparse
import gc
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, StaticCache

MODELS = {
    "smollm2": dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, head_dim=64, intermediate_size=1536, rope_theta=1e5,
                    rms_norm_eps=1e-5, max_position_embeddings=8192, tie_word_embeddings=True),
    "llama-1b": dict(vocab_size=128256, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=64, intermediate_size=8192, rope_theta=5e5,
                     rms_norm_eps=1e-5, max_position_embeddings=131072, tie_word_embeddings=True),
    "llama-8b": dict(vocab_size=128256, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, intermediate_size=14336, rope_theta=5e5,
                     rms_norm_eps=1e-5, max_position_embeddings=8192, tie_word_embeddings=False),
    # For the CPU smoke test only (--tiny): same structure (GQA, tied), toy sizes.
    "tiny": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, intermediate_size=128, rope_theta=1e5,
                 rms_norm_eps=1e-5, max_position_embeddings=8192, tie_word_embeddings=True),
}

OOM = (torch.OutOfMemoryError,)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- set-up

def build_model(name, device, dtype):
    cfg = dict(MODELS[name])
    theta = cfg.pop("rope_theta")
    config = LlamaConfig(**cfg, rope_parameters={"rope_type": "default", "rope_theta": theta},
                         attn_implementation="sdpa", use_cache=True)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # initialise in place on the device: no 32 GB fp32 copy on the host
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(prev)
    # Already on the device in `dtype`; no `.to(dtype)`, which would also round RoPE's fp32 inv_freq buffer.
    model = model.eval()
    bad = {p.dtype for p in model.parameters()} - {dtype}
    if bad:
        raise RuntimeError(f"parameters in {bad}, expected {dtype}")
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    return model, config


def weight_bytes(model, config):
    """(bytes read per decode step, all parameter bytes); tied weights are counted once."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())  # shared ones listed once
    per_step = total
    if not config.tie_word_embeddings:  # an untied input table is only gathered, one row per token
        e = model.get_input_embeddings().weight
        per_step -= e.numel() * e.element_size()
    return per_step, total


def kv_bytes(config, batch, positions, dtype):
    return (batch * positions * config.num_hidden_layers * 2 * config.num_key_value_heads
            * config.head_dim * torch.finfo(dtype).bits // 8)


def free_bytes(device):
    if device.type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)[0]


def cleanup(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


class Counters:
    """StaticCache layers in transformers 5 keep their own write position (`cumulative_length`, a 0-d
    tensor advanced in place by every update). Re-point them at views of one tensor so that one kernel
    (`fill_`) resets all layers to position `pos` before a step, inside or outside a CUDA graph."""

    def __init__(self, cache, device):
        layers = getattr(cache, "layers", None)
        if not layers or not all(isinstance(getattr(l, "cumulative_length", None), torch.Tensor) for l in layers):
            raise RuntimeError("unsupported StaticCache internals (no per-layer cumulative_length tensor)")
        if not all(getattr(l, "is_initialized", False) for l in layers):
            raise RuntimeError("StaticCache not initialised yet (run a forward first)")
        self.base = torch.zeros(len(layers), dtype=layers[0].cumulative_length.dtype, device=device)
        self.base.copy_(torch.stack([l.cumulative_length.to(device) for l in layers]))
        for i, l in enumerate(layers):
            l.cumulative_length = self.base[i]

    def set(self, pos):
        self.base.fill_(pos)


# --------------------------------------------------------------------------------------------- timing

def time_steps(step, device, warmup, iters):
    """Median ms per step (CUDA events around each step; perf_counter on CPU) and wall ms per step."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
        t0 = time.perf_counter()
        for s, e in ev:
            s.record()
            step()
            e.record()
        torch.cuda.synchronize(device)
        wall = (time.perf_counter() - t0) * 1e3 / iters
        ms = [s.elapsed_time(e) for s, e in ev]
    else:
        ms = []
        t0 = time.perf_counter()
        for _ in range(iters):
            t = time.perf_counter()
            step()
            ms.append((time.perf_counter() - t) * 1e3)
        wall = (time.perf_counter() - t0) * 1e3 / iters
    return statistics.median(ms), wall


def capture(fn, device):
    """Capture fn() in a CUDA graph (after warm-up on a side stream, as torch.cuda.graphs requires)."""
    s = torch.cuda.Stream(device)
    s.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(s)
    torch.cuda.synchronize(device)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn()
    torch.cuda.synchronize(device)
    return g, out


# ------------------------------------------------------------------------------------------- the cases

def prefill_into(model, cache, batch, context, vocab, device, chunk_tokens):
    """Untimed: write `context` positions of random tokens into `cache`, in chunks that bound activations."""
    chunk = max(1, min(context, chunk_tokens // batch))
    gen = torch.Generator(device="cpu").manual_seed(1)
    for start in range(0, context, chunk):
        n = min(chunk, context - start)
        ids = torch.randint(0, vocab, (batch, n), generator=gen).to(device)
        pos = torch.arange(start, start + n, device=device).unsqueeze(0).expand(batch, -1)
        model(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return cache


def decode_case(model, config, mode, batch, context, a, device):
    """Time decode steps at `context` in the given mode; returns (ms, wall_ms, extra dict)."""
    vocab = config.vocab_size
    extra = {}
    ids = torch.randint(0, vocab, (batch, 1), generator=torch.Generator().manual_seed(2)).to(device)
    first_ids = ids.clone()
    if mode == "dynamic eager":
        cache = DynamicCache(config=config)
        prefill_into(model, cache, batch, context, vocab, device, a.chunk_tokens)
        pos = torch.full((batch, 1), context, device=device, dtype=torch.long)

        def step():
            out = model(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True)
            ids.copy_(out.logits[:, -1].argmax(-1, keepdim=True))
            pos.add_(1)  # the dynamic cache grows by one position a step (warm-up + iters ≪ context)

        ms, wall = time_steps(step, device, a.warmup, a.iters)
        return ms, wall, extra

    cache = StaticCache(config=config, max_cache_len=context + 1)
    prefill_into(model, cache, batch, context, vocab, device, a.chunk_tokens)
    counters = Counters(cache, device)
    pos = torch.full((batch, 1), context, device=device, dtype=torch.long)

    def forward():
        counters.set(context)
        return model(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True).logits

    if mode == "static eager":
        def step():
            ids.copy_(forward()[:, -1].argmax(-1, keepdim=True))

    elif mode == "static+cudagraph":
        def body():
            logits = forward()
            ids.copy_(logits[:, -1].argmax(-1, keepdim=True))
            return logits

        ids.copy_(first_ids)
        ref = forward()[:, -1].float().clone()  # eager reference for the first token
        graph, logits = capture(body, device)
        ids.copy_(first_ids)
        graph.replay()
        torch.cuda.synchronize(device)
        got = logits[:, -1].float()
        err = (got - ref).abs().nan_to_num(0).max().item()
        scale = ref.abs().nan_to_num(0).max().item()
        extra["graph_check_max_abs"] = err
        if err > 1e-2 * max(scale, 1.0):  # fp16 inf/NaN of random weights are zeroed, not compared
            raise RuntimeError(f"CUDA graph replay disagrees with eager: max |diff| {err:.3g}, max |ref| {scale:.3g}")
        step = graph.replay

    elif mode == "static+compile":
        compiled = torch.compile(model.forward, mode="reduce-overhead", fullgraph=False)
        torch._dynamo.mark_static_address(counters.base)

        def step():
            counters.set(context)
            out = compiled(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True)
            ids.copy_(out.logits[:, -1].argmax(-1, keepdim=True))

        t = time.perf_counter()
        for _ in range(3):  # compiles (not timed here, reported)
            step()
        extra["compile_s"] = round(time.perf_counter() - t, 2)
    else:
        raise ValueError(mode)

    ms, wall = time_steps(step, device, a.warmup, a.iters)
    return ms, wall, extra


def prefill_case(model, config, mode, prompt, a, device):
    vocab = config.vocab_size
    ids = torch.randint(0, vocab, (1, prompt), generator=torch.Generator().manual_seed(3)).to(device)
    pos = torch.arange(prompt, device=device).unsqueeze(0)
    extra = {}
    if mode == "dynamic eager":
        def step():
            model(input_ids=ids, position_ids=pos, past_key_values=DynamicCache(config=config),
                  use_cache=True, logits_to_keep=1)

        return (*time_steps(step, device, a.warmup, a.iters), extra)

    # A static cache exactly as long as the prompt: the mask is skipped and SDPA runs causal (flash).
    cache = StaticCache(config=config, max_cache_len=prompt)
    model(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True, logits_to_keep=1)
    counters = Counters(cache, device)

    def forward():
        counters.set(0)
        return model(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True,
                     logits_to_keep=1).logits

    if mode == "static eager":
        step = forward
    elif mode == "static+cudagraph":
        ref = forward()[:, -1].float().clone()
        graph, logits = capture(forward, device)
        graph.replay()
        torch.cuda.synchronize(device)
        err = (logits[:, -1].float() - ref).abs().nan_to_num(0).max().item()
        extra["graph_check_max_abs"] = err
        if err > 1e-2 * max(ref.abs().nan_to_num(0).max().item(), 1.0):
            raise RuntimeError(f"CUDA graph replay disagrees with eager: max |diff| {err:.3g}")
        step = graph.replay
    elif mode == "static+compile":
        compiled = torch.compile(model.forward, mode="reduce-overhead", fullgraph=False)

        def step():
            counters.set(0)
            compiled(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True, logits_to_keep=1)

        t = time.perf_counter()
        for _ in range(3):
            step()
        extra["compile_s"] = round(time.perf_counter() - t, 2)
    else:
        raise ValueError(mode)
    return (*time_steps(step, device, a.warmup, a.iters), extra)


def run_chain(fn, modes, device):
    """Try modes in order; return (mode, result, failures). An OOM is not retried in a slower mode."""
    failures = {}
    for mode in modes:
        oom = False
        try:
            return mode, fn(mode), failures
        except OOM as e:
            oom = True
            failures[mode] = "out of memory: " + (str(e).splitlines() or [""])[0][:200]
        except Exception as e:  # noqa: BLE001 - record why a mode failed and fall back
            failures[mode] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
        log(f"    {mode} failed: {failures[mode]}")
        cleanup(device)  # outside the except block, so the traceback's tensors can be freed
        if oom:
            return mode, None, failures
    return None, None, failures


# ---------------------------------------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="smollm2,llama-1b,llama-8b")
    p.add_argument("--batch", default="1,8,32,64")
    p.add_argument("--context", default="512,4096")
    p.add_argument("--prompt", type=int, default=512, help="prefill prompt length (batch 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before timing (default 5)")
    p.add_argument("--iters", type=int, default=None, help="timed steps, median reported (default 20)")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default=None, help="float16 (default on CUDA) or float32 (default on CPU)")
    p.add_argument("--compile", action="store_true",
                   help='use torch.compile(mode="reduce-overhead") instead of the manual CUDA-graph capture')
    p.add_argument("--all-modes", action="store_true", help="record every mode for every case, not just the best")
    p.add_argument("--chunk-tokens", type=int, default=8192, help="tokens per forward of the untimed context fill")
    p.add_argument("--quick", action="store_true", help="smollm2 and llama-1b, batch 1 and 32, context 512")
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: a toy model, small batches and contexts")
    a = p.parse_args()

    if a.quick:
        a.models, a.batch, a.context = "smollm2,llama-1b", "1,32", "512"
    if a.tiny:
        a.models, a.batch, a.context, a.prompt = "tiny", "1,4", "32,64", 64
        a.warmup, a.iters = a.warmup if a.warmup is not None else 1, a.iters if a.iters is not None else 3
    a.warmup = 5 if a.warmup is None else a.warmup
    a.iters = 20 if a.iters is None else a.iters
    device = torch.device(a.device)
    dtype = getattr(torch, a.dtype) if a.dtype else (torch.float16 if device.type == "cuda" else torch.float32)
    batches = [int(x) for x in a.batch.split(",")]
    contexts = [int(x) for x in a.context.split(",")]
    models = a.models.split(",")
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}; choose from {','.join(MODELS)}")

    if device.type == "cuda":
        fast = ["static+compile" if a.compile else "static+cudagraph"]
        gpu = torch.cuda.get_device_name(device)
    else:
        fast = ["static+compile"] if a.compile else []  # no CUDA graphs on the CPU
        gpu = "cpu"
    chain = fast + ["static eager", "dynamic eager"]
    meta = {"gpu": gpu, "torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, "dtype": str(dtype).replace("torch.", ""), "args": vars(a)}
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, {gpu}, {meta['dtype']}")
    rows = []

    def emit(row):
        rows.append(row)
        if "skipped" in row:
            log(f"  {row['model']} {row['phase']} b={row['batch']} ctx={row['context']}: skipped ({row['skipped']})")
        else:
            log(f"  {row['model']} {row['phase']} b={row['batch']} ctx={row['context']} [{row['mode']}]: "
                f"{row['ms_per_step']:.3f} ms/step, {row['tokens_per_s']:.0f} tok/s")

    with torch.inference_mode():
        for name in models:
            t0 = time.perf_counter()
            log(f"{name}: building (random init, {meta['dtype']}) ...")
            try:
                model, config = build_model(name, device, dtype)
            except OOM as e:
                emit({"model": name, "phase": "load", "batch": 0, "context": 0, "skipped": f"out of memory: {e}"})
                cleanup(device)
                continue
            wb, pb = weight_bytes(model, config)
            log(f"{name}: {pb / 1e9:.3f} GB of parameters, built in {time.perf_counter() - t0:.1f} s")
            base = {"model": name, "weight_bytes": wb, "param_bytes": pb}

            # Prefill, batch 1: the best mode, and "dynamic eager" (generate's default) beside it.
            done = set()
            for modes in ([[m] for m in chain] if a.all_modes else [chain, ["dynamic eager"]]):
                if set(modes) <= done:
                    continue
                mode_run, res, fails = run_chain(
                    lambda m: prefill_case(model, config, m, a.prompt, a, device), modes, device)
                done.add(mode_run)
                row = {**base, "phase": "prefill", "batch": 1, "context": a.prompt,
                       "kv_bytes_per_step": kv_bytes(config, 1, a.prompt, dtype)}
                if fails:
                    row["failed_modes"] = fails
                if res is None:
                    emit({**row, "mode": mode_run, "skipped": "; ".join(f"{k}: {v}" for k, v in fails.items())})
                else:
                    ms, wall, extra = res
                    emit({**row, "mode": mode_run, "ms_per_step": ms, "ms_per_step_wall": wall,
                          "tokens_per_s": a.prompt / ms * 1e3, **extra})
                cleanup(device)

            # Decode at each batch and context.
            for ctx in contexts:
                for b in batches:
                    row = {**base, "phase": "decode", "batch": b, "context": ctx,
                           "kv_bytes_per_step": kv_bytes(config, b, ctx + 1, dtype)}
                    if ctx + 1 > config.max_position_embeddings:
                        emit({**row, "mode": None, "skipped": f"context {ctx} > model maximum"})
                        continue
                    need = kv_bytes(config, b, ctx + 1, dtype) + (2 << 30)
                    free = free_bytes(device)
                    if free is not None and need > free:
                        emit({**row, "mode": None,
                              "skipped": f"needs ~{need / 1e9:.1f} GB (KV + 2 GB), {free / 1e9:.1f} GB free"})
                        continue
                    for modes in ([[m] for m in chain] if a.all_modes else [chain]):
                        mode_run, res, fails = run_chain(
                            lambda m: decode_case(model, config, m, b, ctx, a, device), modes, device)
                        r = dict(row)
                        if fails:
                            r["failed_modes"] = fails
                        if res is None:
                            emit({**r, "mode": mode_run,
                                  "skipped": "; ".join(f"{k}: {v}" for k, v in fails.items())})
                        else:
                            ms, wall, extra = res
                            emit({**r, "mode": mode_run, "ms_per_step": ms, "ms_per_step_wall": wall,
                                  "tokens_per_s": b / ms * 1e3, **extra})
                        cleanup(device)
            log(f"{name}: done in {time.perf_counter() - t0:.1f} s")
            model = None  # free it before the next model is built
            cleanup(device)

    # The table on stdout.
    print(f"transformers {transformers.__version__} / torch {torch.__version__} on {gpu}, {meta['dtype']}, SDPA")
    hdr = f"{'model':<9} {'phase':<7} {'batch':>5} {'ctx':>5} {'mode':<17} {'ms/step':>9} {'tok/s':>10} " \
          f"{'wall ms':>8} {'GB/s w+kv':>9}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "skipped" in r:
            print(f"{r['model']:<9} {r['phase']:<7} {r['batch']:>5} {r['context']:>5} skipped: {r['skipped'][:80]}")
            continue
        gbs = (r["weight_bytes"] + r["kv_bytes_per_step"]) / (r["ms_per_step"] * 1e-3) / 1e9
        print(f"{r['model']:<9} {r['phase']:<7} {r['batch']:>5} {r['context']:>5} {r['mode']:<17} "
              f"{r['ms_per_step']:>9.3f} {r['tokens_per_s']:>10.0f} {r['ms_per_step_wall']:>8.3f} {gbs:>9.0f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({**meta, "rows": rows}, f, indent=1)
        log(f"wrote {a.json}")


if __name__ == "__main__":
    main()
