//! SmolLM2-135M-Instruct from its GGUF file (fetched by the set-up into
//! `models/SmolLM2-135M-Instruct/model.gguf`) through the host reference decoder: the
//! configuration from the metadata, the tensors under their Hugging Face names, the tokenizer,
//! and a greedy completion that only a correctly wired model gets right.

use sparq::gguf::Gguf;
use sparq::model::llama::gguf::{host_weights, tensor_names, tokenizer};
use sparq::model::llama::{LlamaConfig, Reference, RopeLayout};
use sparq::model::sampling::argmax;

fn smollm2() -> Option<Gguf> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/SmolLM2-135M-Instruct/model.gguf"
    );
    if !std::path::Path::new(path).is_file() {
        eprintln!("skipping: {path} is missing (bash scripts/setup.sh fetches it)");
        return None;
    }
    Some(Gguf::open(path).unwrap())
}

#[test]
fn smollm2_config_and_tensors_come_from_the_metadata() {
    let Some(file) = smollm2() else { return };
    let c = LlamaConfig::from_gguf(&file).unwrap();
    assert_eq!(
        (
            c.vocab_size,
            c.hidden_size,
            c.num_layers,
            c.intermediate_size
        ),
        (49152, 576, 30, 1536)
    );
    assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (9, 3, 64));
    assert_eq!(c.max_context, 8192);
    assert_eq!(c.rope_theta, 100000.0);
    assert!((c.rms_norm_eps - 1e-5).abs() < 1e-9);
    assert!(c.tie_word_embeddings && !c.attention_bias);
    assert_eq!(c.rope_layout, RopeLayout::Interleaved);
    // Every tensor the model needs is in the file, and nothing of the file's is left over.
    let names = tensor_names(&c);
    for (g, _) in &names {
        file.tensor(g).unwrap();
    }
    assert_eq!(names.len(), file.tensors().len());
}

#[test]
fn smollm2_tokenizer_round_trips_and_knows_its_control_tokens() {
    let Some(file) = smollm2() else { return };
    let tok = tokenizer(&file).unwrap();
    let text = "The capital of France is Paris. 12 + 30 = 42, naïve café!";
    let enc = tok.encode(text, false).unwrap();
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
    // Digits are split one by one (the `smollm` pre-tokenizer).
    let digits = tok.encode("2024", false).unwrap();
    assert_eq!(digits.get_ids().len(), 4);
    let chat = tok.encode("<|im_start|>user", false).unwrap();
    assert_eq!(chat.get_tokens()[0], "<|im_start|>");
}

#[test]
fn smollm2_completes_the_capital_of_france() {
    let Some(file) = smollm2() else { return };
    let c = LlamaConfig::from_gguf(&file).unwrap();
    let weights = host_weights(&file, &c).unwrap();
    let model = Reference::new(c, weights).unwrap();
    let tok = tokenizer(&file).unwrap();
    let prompt = tok.encode("The capital of France is", false).unwrap();
    let mut cache = model.new_cache();
    let logits = model.forward(prompt.get_ids(), &mut cache).unwrap();
    let logits: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
    let next = argmax(&logits).unwrap();
    assert_eq!(tok.decode(&[next], false).unwrap(), " Paris");
}

/// Perplexity on the start of the GPL (every Debian machine has it) is low with the weights'
/// own RoPE layout and clearly worse with the other: the end-to-end check of the Q/K row
/// order that one greedy token cannot give.
#[test]
fn smollm2_perplexity_needs_the_interleaved_rope() {
    let Some(file) = smollm2() else { return };
    let Ok(text) = std::fs::read_to_string("/usr/share/common-licenses/GPL-3") else {
        eprintln!("skipping: no /usr/share/common-licenses/GPL-3");
        return;
    };
    let tok = tokenizer(&file).unwrap();
    let ids = tok.encode(text.as_str(), false).unwrap().get_ids()[..64].to_vec();
    let c = LlamaConfig::from_gguf(&file).unwrap();
    let mut ppl = Vec::new();
    for layout in [RopeLayout::Interleaved, RopeLayout::HalfSplit] {
        let c = LlamaConfig {
            rope_layout: layout,
            ..c.clone()
        };
        let model = Reference::new(c.clone(), host_weights(&file, &c).unwrap()).unwrap();
        ppl.push(model.perplexity(&ids).unwrap());
    }
    eprintln!(
        "perplexity over 64 tokens: interleaved {:.2}, half-split {:.2}",
        ppl[0], ppl[1]
    );
    assert!(ppl[0] < 60.0, "{ppl:?}");
    assert!(ppl[1] > 3.0 * ppl[0], "{ppl:?}");
}
