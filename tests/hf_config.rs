//! `Architecture::from_hf_json`, the file-free half of `from_hf_dir` that the `config` fuzz
//! target drives: it reads what the folder reader reads, and refuses what it refuses.

use sparq::model::config::{Architecture, MlpConfig};
use sparq::{Error, InputError};

const BERT: &str = r#"{"model_type": "bert", "vocab_size": 30, "hidden_size": 8,
    "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
    "max_position_embeddings": 16}"#;

fn config_error(r: sparq::Result<Architecture>) -> String {
    match r {
        Err(Error::Input(InputError::Config(m))) => m,
        Err(e) => panic!("not a config error: {e}"),
        Ok(a) => panic!("accepted: {a:?}"),
    }
}

#[test]
fn the_text_of_a_folder_parses_as_the_folder_does() {
    let dir = std::env::temp_dir().join(format!("sparq-test-{}-hf-json", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), BERT).unwrap();
    let sentence_bert = r#"{"max_seq_length": 12}"#;
    std::fs::write(dir.join("sentence_bert_config.json"), sentence_bert).unwrap();
    let from_dir = Architecture::from_hf_dir(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let from_text = Architecture::from_hf_json(BERT, Some(sentence_bert)).unwrap();
    assert_eq!(from_dir.to_json(), from_text.to_json());
    let Architecture::Bert(c) = from_text else {
        panic!("not BERT")
    };
    assert_eq!((c.max_seq_length, c.hidden_size), (Some(12), 8));
    let Architecture::Bert(c) = Architecture::from_hf_json(BERT, None).unwrap() else {
        panic!("not BERT")
    };
    assert_eq!(c.max_seq_length, None);
    // A sentence-transformers file that is not JSON is ignored, as the folder reader does.
    assert!(Architecture::from_hf_json(BERT, Some("not json")).is_ok());
}

#[test]
fn sparq_json_and_bad_configs() {
    let mlp = Architecture::Mlp(MlpConfig {
        sizes: vec![4, 2],
        activation: sparq::model::config::Activation::Relu,
    });
    let back = Architecture::from_hf_json(&mlp.to_json(), None).unwrap();
    assert_eq!(back.to_json(), mlp.to_json());
    let m = config_error(Architecture::from_hf_json(
        r#"{"model_type": "gpt2"}"#,
        None,
    ));
    assert!(m.contains("model_type 'gpt2'"), "{m}");
    let m = config_error(Architecture::from_hf_json("{", None));
    assert!(m.starts_with("config.json: "), "{m}");
    let heads = BERT.replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 3");
    let m = config_error(Architecture::from_hf_json(&heads, None));
    assert!(m.contains("not a multiple of num_attention_heads 3"), "{m}");
}
