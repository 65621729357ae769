//! Writes the fuzzers' seed corpus (`fuzz/seed.sh` runs it): small valid inputs for each
//! target under `OUT/<target>/`. Each model seed is checked to read back before it is kept.
//!
//! Usage: `cargo run --example fuzz_seed -- OUT [MODELS]` (MODELS: the folder holding
//! `all-MiniLM-L6-v2`, for its `config.json`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparq::formats::WeightFormat;
use sparq::gguf::writer::Writer;
use sparq::gguf::{Array, GgmlType, Value};
use sparq::model::compress::{self, Compression, SparseStorage};
use sparq::model::config::{Activation, Architecture, BertConfig, MlpConfig, Pooling};
use sparq::model::loader::{self, CONFIG_KEY, WeightFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn random(r: &mut StdRng, shape: &[usize], scale: f32, offset: f32) -> Vec<f32> {
    let n = shape.iter().product();
    (0..n)
        .map(|_| r.random_range(-1.0f32..1.0) * scale + offset)
        .collect()
}

fn bert() -> BertConfig {
    BertConfig {
        vocab_size: 12,
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        hidden_act: "gelu".into(),
        max_position_embeddings: 8,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        pooling: Pooling::Mean,
        normalize: true,
        max_seq_length: Some(8),
    }
}

fn bert_tensors(r: &mut StdRng, c: &BertConfig) -> Tensors {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let mut t = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, offset: f32| {
        let v = random(r, &shape, 0.3, offset);
        t.push((name, shape, v));
    };
    add(
        "embeddings.word_embeddings.weight".into(),
        vec![c.vocab_size, h],
        0.0,
    );
    add(
        "embeddings.position_embeddings.weight".into(),
        vec![c.max_position_embeddings, h],
        0.0,
    );
    add(
        "embeddings.token_type_embeddings.weight".into(),
        vec![c.type_vocab_size, h],
        0.0,
    );
    add("embeddings.LayerNorm.weight".into(), vec![h], 1.0);
    add("embeddings.LayerNorm.bias".into(), vec![h], 0.0);
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}.");
        for part in ["query", "key", "value"] {
            add(format!("{p}attention.self.{part}.weight"), vec![h, h], 0.0);
            add(format!("{p}attention.self.{part}.bias"), vec![h], 0.0);
        }
        add(format!("{p}attention.output.dense.weight"), vec![h, h], 0.0);
        add(format!("{p}attention.output.dense.bias"), vec![h], 0.0);
        add(
            format!("{p}attention.output.LayerNorm.weight"),
            vec![h],
            1.0,
        );
        add(format!("{p}attention.output.LayerNorm.bias"), vec![h], 0.0);
        add(format!("{p}intermediate.dense.weight"), vec![i, h], 0.0);
        add(format!("{p}intermediate.dense.bias"), vec![i], 0.0);
        add(format!("{p}output.dense.weight"), vec![h, i], 0.0);
        add(format!("{p}output.dense.bias"), vec![h], 0.0);
        add(format!("{p}output.LayerNorm.weight"), vec![h], 1.0);
        add(format!("{p}output.LayerNorm.bias"), vec![h], 0.0);
    }
    t
}

fn mlp() -> MlpConfig {
    MlpConfig {
        sizes: vec![32, 32, 4],
        activation: Activation::Relu,
    }
}

fn mlp_tensors(r: &mut StdRng, c: &MlpConfig) -> Tensors {
    (0..c.sizes.len() - 1)
        .flat_map(|i| {
            let (k, n) = (c.sizes[i], c.sizes[i + 1]);
            [
                (
                    format!("layers.{i}.weight"),
                    vec![n, k],
                    random(r, &[n, k], 0.5, 0.0),
                ),
                (
                    format!("layers.{i}.bias"),
                    vec![n],
                    random(r, &[n], 0.1, 0.0),
                ),
            ]
        })
        .collect()
}

/// Writes the float model, then each packed variant that packs and reads back.
fn weights(dir: &Path, stem: &str, arch: &Architecture, tensors: &Tensors) -> sparq::Result<()> {
    let meta = HashMap::from([(CONFIG_KEY.to_string(), arch.to_json())]);
    let float = dir.join(format!("{stem}-f32.safetensors"));
    loader::save(&float, tensors, &[], meta.clone())?;
    let file = WeightFile::open(&float)?;
    for (format, sparse) in [
        ("f16", None),
        ("int8", None),
        ("int4g32", None),
        ("f16", Some("2:4")),
        ("f32", Some("magnitude:0.7")),
        ("f16", Some("blocks:4x4:0.5")),
        ("f32", Some("blocks:8x8:0.5")),
    ] {
        let c = Compression {
            format: WeightFormat::parse(format)?,
            sparse: sparse.map(SparseStorage::parse).transpose()?,
        };
        let name = format!(
            "{stem}-{format}-{}",
            sparse.unwrap_or("dense").replace(':', "_")
        );
        let out = dir.join(format!("{name}.safetensors"));
        let kept = compress::pack_model(&file, arch, &c, None).and_then(|(f, p, _)| {
            loader::save(&out, &f, &p, meta.clone())?;
            // Kept only if the fuzz target's path reads it back.
            let back = WeightFile::open(&out)?;
            arch.family()
                .pack(&back, &mut loader::quantizer(WeightFormat::F32))
        });
        if let Err(e) = kept {
            eprintln!("fuzz_seed: skipping {name}: {e}");
            let _ = std::fs::remove_file(&out);
        }
    }
    Ok(())
}

fn tokenizer_meta(w: &mut Writer) {
    let tokens: Vec<String> = [
        "<|im_start|>",
        "<|im_end|>",
        "h",
        "e",
        "l",
        "o",
        "Ġ",
        "he",
        "ll",
    ]
    .map(String::from)
    .to_vec();
    let types = (0..tokens.len() as i32)
        .map(|i| if i < 2 { 3 } else { 1 })
        .collect();
    w.kv("tokenizer.ggml.model", Value::Str("gpt2".into()));
    w.kv("tokenizer.ggml.pre", Value::Str("smollm".into()));
    w.kv("tokenizer.ggml.tokens", Value::Array(Array::Str(tokens)));
    w.kv("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    w.kv(
        "tokenizer.ggml.merges",
        Value::Array(Array::Str(vec!["h e".into(), "l l".into()])),
    );
    w.kv("tokenizer.ggml.bos_token_id", Value::U32(0));
    w.kv("tokenizer.ggml.eos_token_id", Value::U32(1));
    w.kv(
        "tokenizer.chat_template",
        Value::Str(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
             {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
                .into(),
        ),
    );
}

/// A tiny Llama GGUF: metadata, tokenizer, every tensor in `ty` (F32, F16 or Q8_0).
fn gguf(r: &mut StdRng, ty: GgmlType) -> Vec<u8> {
    let (vocab, hidden, ffn, layers) = (9u64, 32u64, 32u64, 1u64);
    let mut w = Writer::new();
    w.kv("general.architecture", Value::Str("llama".into()));
    for (k, v) in [
        ("embedding_length", hidden),
        ("block_count", layers),
        ("attention.head_count", 2),
        ("attention.head_count_kv", 1),
        ("rope.dimension_count", 16),
        ("feed_forward_length", ffn),
        ("context_length", 16),
        ("vocab_size", vocab),
    ] {
        w.kv(&format!("llama.{k}"), Value::U32(v as u32));
    }
    w.kv("llama.rope.freq_base", Value::F32(10000.0));
    w.kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    tokenizer_meta(&mut w);
    let mut tensor = |w: &mut Writer, name: &str, dims: &[u64]| {
        let n: u64 = dims.iter().product();
        let vals: Vec<f32> = (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect();
        // Vectors stay f32, as llama.cpp writes norms.
        let ty = if dims.len() == 1 { GgmlType::F32 } else { ty };
        let data = match ty {
            GgmlType::F16 => vals
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            GgmlType::Q8_0 => vals
                .chunks(32)
                .flat_map(|b| {
                    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                    let mut out = half::f16::from_f32(scale).to_le_bytes().to_vec();
                    out.extend(b.iter().map(|v| (v / scale).round() as i8 as u8));
                    out
                })
                .collect(),
            _ => bytemuck::cast_slice(&vals).to_vec(),
        };
        w.tensor(name, dims, ty, data);
    };
    tensor(&mut w, "token_embd.weight", &[hidden, vocab]);
    tensor(&mut w, "output_norm.weight", &[hidden]);
    for l in 0..layers {
        let b = format!("blk.{l}.");
        tensor(&mut w, &format!("{b}attn_norm.weight"), &[hidden]);
        tensor(&mut w, &format!("{b}attn_q.weight"), &[hidden, 32]);
        tensor(&mut w, &format!("{b}attn_k.weight"), &[hidden, 16]);
        tensor(&mut w, &format!("{b}attn_v.weight"), &[hidden, 16]);
        tensor(&mut w, &format!("{b}attn_output.weight"), &[32, hidden]);
        tensor(&mut w, &format!("{b}ffn_norm.weight"), &[hidden]);
        tensor(&mut w, &format!("{b}ffn_gate.weight"), &[hidden, ffn]);
        tensor(&mut w, &format!("{b}ffn_up.weight"), &[hidden, ffn]);
        tensor(&mut w, &format!("{b}ffn_down.weight"), &[ffn, hidden]);
    }
    w.to_bytes()
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    std::fs::write(dir.join(name), bytes)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let out = PathBuf::from(args.next().ok_or("usage: fuzz_seed OUT [MODELS]")?);
    let models = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| "models".into());
    let dir = |t: &str| -> std::io::Result<PathBuf> {
        let d = out.join(t);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let mut r = StdRng::seed_from_u64(18);

    let (b, m) = (bert(), mlp());
    let (bert_arch, mlp_arch) = (Architecture::Bert(b.clone()), Architecture::Mlp(m.clone()));
    let d = dir("weights")?;
    weights(&d, "bert", &bert_arch, &bert_tensors(&mut r, &b))?;
    weights(&d, "mlp", &mlp_arch, &mlp_tensors(&mut r, &m))?;

    let d = dir("config")?;
    write(&d, "bert.json", bert_arch.to_json())?;
    write(&d, "mlp.json", mlp_arch.to_json())?;
    let minilm = models.join("all-MiniLM-L6-v2");
    if let Ok(c) = std::fs::read_to_string(minilm.join("config.json")) {
        write(&d, "minilm.json", &c)?;
        if let Ok(s) = std::fs::read_to_string(minilm.join("sentence_bert_config.json")) {
            write(&d, "minilm-sentence-bert.json", format!("{c}\0{s}"))?;
        }
    }
    write(
        &d,
        "hf-bert.json",
        r#"{"model_type":"bert","vocab_size":30,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":16}"#,
    )?;

    let d = dir("batch_json")?;
    for (i, s) in [
        r#"{"texts": ["a sentence", "another one"]}"#,
        r#"{"ids": [[101, 7592, 102], [101, 102]], "types": [[0, 0, 0], [0, 0]]}"#,
        r#"{"ids": [[1, 2, 3]]}"#,
        r#"{"features": [[0.5, -1.0, 2.0], [1e-3, 0.0, 3.5]]}"#,
        "\u{feff}{\"texts\": [\"with a BOM\"]}",
    ]
    .iter()
    .enumerate()
    {
        write(&d, &format!("batch-{i}.json"), s)?;
    }

    let d = dir("tokenize")?;
    for (i, s) in [
        "The quick brown fox jumps over the lazy dog.",
        "<|im_start|>user\nhello<|im_end|>",
        "naïve café — 東京 🎉 [CLS] [SEP] [UNK]",
        "{{ raise_exception('x') }} {% for %}",
        "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a",
    ]
    .iter()
    .enumerate()
    {
        write(&d, &format!("text-{i}.txt"), s)?;
    }

    let d = dir("gguf")?;
    for (name, ty) in [
        ("f32", GgmlType::F32),
        ("f16", GgmlType::F16),
        ("q8_0", GgmlType::Q8_0),
    ] {
        write(&d, &format!("llama-{name}.gguf"), gguf(&mut r, ty))?;
    }

    // Server requests: a method byte (0 POST with JSON, 2 GET), a route byte (the target's
    // table), then the body.
    let d = dir("server_request")?;
    for (i, (m, route, body)) in [
        (0u8, 0u8, r#"{"model":"emb","input":["hello","world"]}"#),
        (0, 0, r#"{"model":"emb","input":[[1,2,3]],"encoding_format":"base64"}"#),
        (0, 1, r#"{"model":"gen","prompt":"Once","max_tokens":2}"#),
        (
            0,
            1,
            r#"{"model":"gen","prompt":"Once","max_tokens":2,"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            0,
            2,
            r#"{"model":"gen","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"temperature":0.5,"top_p":0.9,"seed":1,"stop":["x"]}"#,
        ),
        (
            0,
            2,
            r#"{"model":"gen","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        ),
        (2, 3, ""),
        (2, 4, ""),
        (2, 5, ""),
    ]
    .iter()
    .enumerate()
    {
        let mut bytes = vec![*m, *route];
        bytes.extend_from_slice(body.as_bytes());
        write(&d, &format!("request-{i}"), bytes)?;
    }
    Ok(())
}
