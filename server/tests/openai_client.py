#!/usr/bin/env python3
"""The official `openai` Python client against a running `sparq serve` (or any server that
follows the OpenAI API): embeddings (float and base64, compared with expected vectors when
given), completions, chat with and without streaming (streamed text == whole text for the same
seed), models.list(), and error cases raising the client's own exception classes.

Run with the set-up's venv (scripts/setup.sh makes .venv-openai):
    .venv-openai/bin/python server/tests/openai_client.py --url http://127.0.0.1:8080 \
        --api-key KEY [--embed-model minilm] [--gen-model smollm2] [--expected FILE]
--url and --api-key default to $SPARQ_SERVER_URL and $SPARQ_API_KEY. FILE is JSON:
    {"input": ["text", ...], "embeddings": [[float, ...], ...], "atol": 1e-4}
Prints one line per check and a summary; exits 1 when a check failed, 2 on bad usage.
"""

import argparse
import base64
import json
import math
import os
import struct
import sys
import traceback

try:
    import openai
except ImportError:
    print("openai_client: the `openai` package is missing: run scripts/setup.sh "
          "(it installs it into .venv-openai) and use .venv-openai/bin/python", file=sys.stderr)
    sys.exit(2)

TEXTS = ["The quick brown fox jumps over the lazy dog.", "sparq runs models on any GPU."]
PROMPT = "The capital of France is"
CHAT = [{"role": "user", "content": "Name three colours."}]


class Checks:
    """Runs named checks, each a function that raises on failure."""

    def __init__(self):
        self.passed, self.failed = [], []

    def run(self, name, fn):
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the rest
            self.failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            if os.environ.get("SPARQ_VERBOSE"):
                traceback.print_exc()
            return
        self.passed.append(name)
        print(f"ok   {name}" + (f" ({detail})" if detail else ""))


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def decode_base64(s):
    raw = base64.b64decode(s)
    check(len(raw) % 4 == 0, f"base64 embedding of {len(raw)} bytes is not f32s")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def max_diff(a, b):
    check(len(a) == len(b), f"dimension {len(a)} != {len(b)}")
    return max(abs(x - y) for x, y in zip(a, b))


def expect_error(cls, status, fn):
    """fn() must raise `cls` with HTTP `status` and an OpenAI-shaped error body."""
    try:
        fn()
    except cls as e:
        check(e.status_code == status, f"{cls.__name__} with status {e.status_code}, not {status}")
        # The client unwraps {"error": {...}}: the body left is the error object.
        check(isinstance(e.body, dict) and isinstance(e.body.get("message"), str),
              f"error body not in the OpenAI shape: {e.body!r}")
        return f"{status}: {e.body['message'][:60]}"
    except openai.APIStatusError as e:
        raise AssertionError(f"expected {cls.__name__} ({status}), got "
                             f"{type(e).__name__} ({e.status_code}): {e.body!r}") from None
    raise AssertionError(f"expected {cls.__name__} ({status}), the call succeeded")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("SPARQ_SERVER_URL"))
    ap.add_argument("--api-key", default=os.environ.get("SPARQ_API_KEY"))
    ap.add_argument("--embed-model", default="minilm")
    ap.add_argument("--gen-model", default="smollm2")
    ap.add_argument("--expected", help="JSON file of expected embeddings")
    ap.add_argument("--max-tokens", type=int, default=8)
    args = ap.parse_args()
    if not args.url:
        ap.error("--url (or SPARQ_SERVER_URL) is required")
    base = args.url.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    # No retries: a 429 or 5xx must show, not be hidden behind the client's back-off.
    client = openai.OpenAI(base_url=base, api_key=args.api_key or "none", max_retries=0,
                           timeout=120.0)
    c = Checks()
    em, gm, n = args.embed_model, args.gen_model, args.max_tokens
    floats = {}

    def models():
        ids = [m.id for m in client.models.list()]
        check(em in ids and gm in ids, f"models.list() gave {ids}, not {em} and {gm}")
        return ", ".join(ids)

    def embed_float():
        r = client.embeddings.create(model=em, input=TEXTS, encoding_format="float")
        check(len(r.data) == len(TEXTS), f"{len(r.data)} embeddings for {len(TEXTS)} inputs")
        check([d.index for d in r.data] == list(range(len(TEXTS))), "indices not in order")
        vecs = [d.embedding for d in r.data]
        check(all(isinstance(x, float) and math.isfinite(x) for v in vecs for x in v),
              "non-finite or non-float values")
        check(len({len(v) for v in vecs}) == 1 and len(vecs[0]) > 0, "ragged dimensions")
        check(r.usage.prompt_tokens > 0, f"usage.prompt_tokens = {r.usage.prompt_tokens}")
        check(max_diff(vecs[0], vecs[1]) > 1e-3, "two different texts, the same vector")
        floats["v"] = vecs
        return f"dim {len(vecs[0])}, {r.usage.prompt_tokens} prompt tokens"

    def embed_base64():
        check("v" in floats, "needs the float embeddings")
        r = client.embeddings.create(model=em, input=TEXTS, encoding_format="base64")
        got = [decode_base64(d.embedding) for d in r.data]
        d = max(max_diff(a, b) for a, b in zip(got, floats["v"]))
        check(d <= 1e-6, f"base64 and float embeddings differ by {d}")
        # The client's default asks for base64 and decodes it itself.
        r = client.embeddings.create(model=em, input=TEXTS[0])
        d = max_diff(r.data[0].embedding, floats["v"][0])
        check(d <= 1e-6, f"default-format embedding differs by {d}")
        return f"max diff {d:.1e}"

    def embed_expected():
        with open(args.expected) as f:
            exp = json.load(f)
        atol = float(exp.get("atol", 1e-4))
        r = client.embeddings.create(model=em, input=exp["input"], encoding_format="float")
        check(len(r.data) == len(exp["embeddings"]), "a different number of embeddings")
        d = max(max_diff(g.embedding, e) for g, e in zip(r.data, exp["embeddings"]))
        check(d <= atol, f"embeddings differ from the expected ones by {d} > {atol}")
        return f"{len(r.data)} vectors, max diff {d:.1e} <= {atol}"

    def completion(stream, **kw):
        if not stream:
            r = client.completions.create(model=gm, prompt=PROMPT, max_tokens=n, **kw)
            ch = r.choices[0]
            check(r.usage.prompt_tokens > 0, "usage.prompt_tokens is 0")
            check(0 < r.usage.completion_tokens <= n, f"{r.usage.completion_tokens} tokens")
            return ch.text, ch.finish_reason
        text, finish = "", None
        for chunk in client.completions.create(model=gm, prompt=PROMPT, max_tokens=n,
                                               stream=True, **kw):
            if chunk.choices:
                text += chunk.choices[0].text or ""
                finish = chunk.choices[0].finish_reason or finish
        return text, finish

    def chat(stream, **kw):
        if not stream:
            r = client.chat.completions.create(model=gm, messages=CHAT, max_tokens=n, **kw)
            ch = r.choices[0]
            check(ch.message.role == "assistant", f"role {ch.message.role}")
            check(0 < r.usage.completion_tokens <= n, f"{r.usage.completion_tokens} tokens")
            return ch.message.content or "", ch.finish_reason
        text, finish = "", None
        for chunk in client.chat.completions.create(model=gm, messages=CHAT, max_tokens=n,
                                                    stream=True, **kw):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        return text, finish

    def same_streamed(fn, **kw):
        def go():
            whole, f1 = fn(False, **kw)
            streamed, f2 = fn(True, **kw)
            check(whole != "", "empty text")
            check(f1 in ("stop", "length"), f"finish_reason {f1!r}")
            check(streamed == whole, f"streamed {streamed!r} != whole {whole!r}")
            check(f2 == f1, f"streamed finish_reason {f2!r} != {f1!r}")
            return repr(whole[:40])
        return go

    def too_long():
        prompt = "hello " * 20000  # far past SmolLM2's context, well under a body limit
        return expect_error(openai.BadRequestError, 400, lambda: client.completions.create(
            model=gm, prompt=prompt, max_tokens=n))

    def bad_field():
        expect_error(openai.BadRequestError, 400, lambda: client.completions.create(
            model=gm, prompt=PROMPT, max_tokens=-5))
        return expect_error(openai.BadRequestError, 400, lambda: client.embeddings.create(
            model=em, input=TEXTS, encoding_format="int8"))

    def wrong_key():
        bad = openai.OpenAI(base_url=base, api_key="not-the-key", max_retries=0, timeout=30.0)
        expect_error(openai.AuthenticationError, 401, lambda: bad.models.list())
        return expect_error(openai.AuthenticationError, 401, lambda: bad.embeddings.create(
            model=em, input=TEXTS))

    def unknown_model():
        expect_error(openai.NotFoundError, 404, lambda: client.embeddings.create(
            model="no-such-model", input=TEXTS))
        return expect_error(openai.NotFoundError, 404, lambda: client.chat.completions.create(
            model="no-such-model", messages=CHAT, max_tokens=n))

    c.run("models.list", models)
    c.run("embeddings float", embed_float)
    c.run("embeddings base64", embed_base64)
    if args.expected:
        c.run("embeddings == expected", embed_expected)
    c.run("completions: streamed == whole (temperature 0)",
          same_streamed(completion, temperature=0.0, seed=1))
    c.run("completions: streamed == whole (seed 7, temperature 0.8)",
          same_streamed(completion, temperature=0.8, seed=7))
    c.run("chat: streamed == whole (temperature 0)", same_streamed(chat, temperature=0.0, seed=1))
    c.run("chat: streamed == whole (seed 7, temperature 0.8)",
          same_streamed(chat, temperature=0.8, seed=7))
    c.run("400 BadRequestError: prompt too long", too_long)
    c.run("400 BadRequestError: bad field", bad_field)
    c.run("401 AuthenticationError: wrong key", wrong_key)
    c.run("404 NotFoundError: unknown model", unknown_model)
    print(f"openai_client: {len(c.passed)} passed, {len(c.failed)} failed"
          f" (openai {openai.__version__}, {base})")
    if c.failed:
        print("failed: " + "; ".join(c.failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
