#!/usr/bin/env python3
"""llama.cpp's token ids for SmolLM2-135M-Instruct, the reference for sparq's tokenizer.

Writes tests/fixtures/smollm2_llamacpp_tokens.json: each test string with the ids llama.cpp's
`llama-tokenize` gives for it, with special tokens parsed (the tool's default) and with
--no-parse-special, read byte-exactly from a file (--no-escape). tests/llama_tokenizer.rs
compares sparq's TextCodec with them. llama.cpp comes from llama-cpp-python's PyPI sdist
(it vendors vendor/llama.cpp); build only the tool, CPU only, outside the repository:

    pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d /tmp/lcpp
    tar xzf /tmp/lcpp/llama_cpp_python-0.3.36.tar.gz -C /tmp/lcpp
    cmake -S /tmp/lcpp/llama_cpp_python-0.3.36/vendor/llama.cpp -B /tmp/lcpp/b \\
        -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \\
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \\
        -DCMAKE_C_FLAGS=-O0 -DCMAKE_CXX_FLAGS=-O0
    cmake --build /tmp/lcpp/b --target llama-tokenize -j2
    python3 scripts/smollm2_llamacpp_tokens.py /tmp/lcpp/b/bin/llama-tokenize COMMIT
"""
import json
import os
import subprocess
import sys
import tempfile

CASES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "multiple   spaces   inside",
    "   ",
    " ",
    "line one\nline two",
    "\n\n\nthree newlines first",
    "ends with newline\n",
    "tab\tseparated\tvalues",
    "mixed \t\n whitespace \n\n  end",
    "  \nb",
    "12345",
    "3.14",
    "1,000,000",
    "year 2024 and 1999, or 42nd",
    " 7 apples",
    "don't",
    "I'll go, we're sure, they've left, she'd know, it's fine, I'm here",
    "DON'T I'LL WE'RE",
    "'quoted' and ''double''",
    "Wait!!! What?!... (yes) [no] {maybe} <tag> -- ** ## @@ $$ %%",
    "!!!???...",
    "a+b=c; x->y; f(x) == g(y) && h || !k",
    "fn main() {\n    println!(\"hi\");\n}\n",
    "caf\u00e9",
    "na\u00efve r\u00e9sum\u00e9",
    "Stra\u00dfe",
    "\u4e2d\u6587\u6d4b\u8bd5",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "emoji \U0001f642 smile",
    "\U0001f642\U0001f643\U0001f44d\U0001f3fd",
    "family \U0001f468\u200d\U0001f469\u200d\U0001f467",
    "e\u0301 combining a\u0308 marks",
    "\u03a9\u2248\u00e7\u221a\u222b \u00bd \u2167 \u0663",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
    "\u0645\u0631\u062d\u0628\u0627",
    "windows\r\nline ends\r\n",
    "no\u00a0break\u3000ideographic space",
    "a1b2c3 123abc",
    "\U0001d518\U0001d52b\U0001d526 math letters",
    "replacement \ufffd char",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|im_end|>more",
    "<|im_start|",
    "<|im_start|><|im_start|>",
    "",
    "The history of natural language processing generally started in the 1950s, although work "
    "can be found from earlier periods. In 1950, Alan Turing published an article titled "
    "\"Computing Machinery and Intelligence\" which proposed what is now called the Turing test "
    "as a criterion of intelligence. The Georgetown experiment in 1954 involved fully automatic "
    "translation of more than sixty Russian sentences into English. The authors claimed that "
    "within three or five years, machine translation would be a solved problem. However, real "
    "progress was much slower, and after the ALPAC report in 1966, which found that ten-year-long "
    "research had failed to fulfill the expectations, funding for machine translation was "
    "dramatically reduced. Little further research in machine translation was conducted until "
    "the late 1980s when the first statistical machine translation systems were developed.",
]


def tokenize(tool, model, text, extra):
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(text.encode("utf-8"))
        name = f.name
    try:
        r = subprocess.run(
            [tool, "-m", model, "-f", name, "--ids", "--no-escape", "--log-disable"] + extra,
            capture_output=True,
            check=True,
        )
    finally:
        os.unlink(name)
    line = [l for l in r.stdout.decode().splitlines() if l.startswith("[")][-1]
    return json.loads(line)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tool, commit = sys.argv[1], sys.argv[2]
    model = os.path.join(root, "models", "SmolLM2-135M-Instruct", "model.gguf")
    cases = [
        {
            "text": s,
            "parse_special": tokenize(tool, model, s, []),
            "no_parse_special": tokenize(tool, model, s, ["--no-parse-special"]),
        }
        for s in CASES
    ]
    # Whether the tool puts BOS in front (it does when the model's add_bos_token says so).
    adds_bos = tokenize(tool, model, "hello", []) != tokenize(tool, model, "hello", ["--no-bos"])
    doc = {
        "about": "llama.cpp's tokenization of models/SmolLM2-135M-Instruct/model.gguf by "
        "llama-tokenize -f FILE --ids --no-escape, with special tokens parsed (the tool's "
        "default) and with --no-parse-special. add_bos_token: whether the tool put BOS in "
        "front (it follows the model's tokenizer.ggml.add_bos_token).",
        "llama_cpp": "vendored in llama-cpp-python 0.3.36 (PyPI sdist), llama.cpp commit " + commit,
        "add_bos_token": adds_bos,
        "cases": cases,
    }
    out = os.path.join(root, "tests", "fixtures", "smollm2_llamacpp_tokens.json")
    with open(out, "w", encoding="utf-8") as f:
        # One case to a line: the file stays short and a changed id shows as one changed line.
        cases = doc.pop("cases")
        head = json.dumps(doc, ensure_ascii=False, indent=1)[:-2]
        body = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
        f.write(head + ',\n "cases": [\n' + body + "\n ]\n}\n")
    print(f"{len(cases)} cases written to {out}")


if __name__ == "__main__":
    main()
