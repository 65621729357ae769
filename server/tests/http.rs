//! Every endpoint's answers and error statuses, over loopback, with fake services.

mod common;

use base64::Engine;
use common::{FakeGenerator, events, quick, start};
use sparq_server::ServerConfig;
use std::time::Duration;

#[test]
fn embeddings_every_input_shape_and_base64() {
    let h = quick();
    let r = h.post("/v1/embeddings", r#"{"model":"emb","input":"hello"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "emb");
    assert_eq!(
        v["data"][0]["embedding"],
        serde_json::json!([5.0, 104.0, 1.0])
    );
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"], 5);

    let v = h
        .post("/v1/embeddings", r#"{"model":"emb","input":["ab","xyz"]}"#)
        .json();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[1]["embedding"], serde_json::json!([3.0, 120.0, 1.0]));
    assert_eq!(v["usage"]["prompt_tokens"], 5);

    let v = h
        .post("/v1/embeddings", r#"{"model":"emb","input":[7,8,9]}"#)
        .json();
    assert_eq!(
        v["data"][0]["embedding"],
        serde_json::json!([3.0, 7.0, 2.0])
    );
    let v = h
        .post("/v1/embeddings", r#"{"model":"emb","input":[[4],[5,6]]}"#)
        .json();
    assert_eq!(
        v["data"][1]["embedding"],
        serde_json::json!([2.0, 5.0, 2.0])
    );

    let v = h
        .post(
            "/v1/embeddings",
            r#"{"model":"emb","input":"hello","encoding_format":"base64"}"#,
        )
        .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, [5.0, 104.0, 1.0]);
}

#[test]
fn embedding_errors() {
    let h = quick();
    let e = h
        .post("/v1/embeddings", r#"{"model":"nope","input":"x"}"#)
        .assert_error(404);
    assert_eq!(e["error"]["code"], "model_not_found");
    h.post("/v1/embeddings", r#"{"model":"gen","input":"x"}"#)
        .assert_error(400);
    h.post("/v1/embeddings", r#"{"model":"emb","input":[]}"#)
        .assert_error(400);
    h.post("/v1/embeddings", r#"{"model":"emb","input":""}"#)
        .assert_error(400);
    h.post("/v1/embeddings", r#"{"model":"emb","input":[-1]}"#)
        .assert_error(400);
    let e = h
        .post(
            "/v1/embeddings",
            r#"{"model":"emb","input":"x","encoding_format":"hex"}"#,
        )
        .assert_error(400);
    assert_eq!(e["error"]["param"], "encoding_format");
}

#[test]
fn completions_plain_and_streamed_agree() {
    let h = quick();
    let r = h.post(
        "/v1/completions",
        r#"{"model":"gen","prompt":"abcd","max_tokens":5,"seed":3}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"), "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["choices"][0]["text"], FakeGenerator::text(5));
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"], 9);

    // The default max_tokens (16) is beyond the fake's 7 pieces: it ends with EOS.
    let v = h
        .post("/v1/completions", r#"{"model":"gen","prompt":[1,2]}"#)
        .json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["text"], FakeGenerator::text(7));

    let r = h.post(
        "/v1/completions",
        r#"{"model":"gen","prompt":"abcd","max_tokens":5,"seed":3,"stream":true,
            "stream_options":{"include_usage":true}}"#,
    );
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/event-stream"),
        "{}",
        r.content_type
    );
    let ev = events(&r.body);
    assert_eq!(ev.last().unwrap(), "[DONE]");
    let chunks: Vec<serde_json::Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], serde_json::json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let text: String = chunks[..chunks.len() - 1]
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, FakeGenerator::text(5));
    // Empty pieces send no chunk.
    assert_eq!(chunks.len(), 4 + 1 + 1);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
}

#[test]
fn chat_plain_and_streamed_agree() {
    let h = quick();
    let body = r#"{"model":"gen","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#;
    let v = h.post("/v1/chat/completions", body).json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        FakeGenerator::text(4)
    );
    assert_eq!(v["usage"]["prompt_tokens"], "user: hi\n".len());
    // Content as a list of text parts is the same conversation.
    let parts = r#"{"model":"gen","messages":[{"role":"user","content":[{"type":"text","text":"h"},
        {"type":"text","text":"i"}]}],"max_tokens":4}"#;
    let p = h.post("/v1/chat/completions", parts).json();
    assert_eq!(p["usage"], v["usage"]);
    assert_eq!(p["choices"][0]["message"], v["choices"][0]["message"]);

    let body = r#"{"model":"gen","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let r = h.post("/v1/chat/completions", body);
    let ev = events(&r.body);
    let chunks: Vec<serde_json::Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    // No max_tokens: all the context is allowed, the fake ends with EOS after 7 pieces.
    assert_eq!(text, FakeGenerator::text(7));
}

#[test]
fn generation_errors() {
    let h = quick();
    let complete = |body: &str| h.post("/v1/completions", body);
    complete(r#"{"model":"gen","prompt":"a","n":2}"#).assert_error(400);
    complete(r#"{"model":"emb","prompt":"a"}"#).assert_error(400);
    complete(r#"{"model":"nope","prompt":"a"}"#).assert_error(404);
    complete(r#"{"model":"gen","prompt":""}"#).assert_error(400);
    complete(r#"{"model":"gen","prompt":"a","temperature":3}"#).assert_error(400);
    complete(r#"{"model":"gen","prompt":"a","top_p":0}"#).assert_error(400);
    complete(r#"{"model":"gen","prompt":"a","stop":["1","2","3","4","5"]}"#).assert_error(400);
    assert_eq!(
        complete(r#"{"model":"gen","prompt":"a","stop":"x"}"#).status,
        200
    );
    // The fake's context is 64 tokens (one per byte).
    let long = format!(r#"{{"model":"gen","prompt":"{}"}}"#, "a".repeat(64));
    let e = complete(&long).assert_error(400);
    assert_eq!(e["error"]["param"], "prompt");
    let e = complete(r#"{"model":"gen","prompt":"abcd","max_tokens":61}"#).assert_error(400);
    assert_eq!(e["error"]["param"], "max_tokens");
    assert_eq!(
        complete(r#"{"model":"gen","prompt":"abcd","max_tokens":60}"#).status,
        200
    );
    let chat = r#"{"model":"gen","messages":[]}"#;
    h.post("/v1/chat/completions", chat).assert_error(400);
    let image = r#"{"model":"gen","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#;
    h.post("/v1/chat/completions", image).assert_error(400);

    let r = complete(r#"{"model":"busy","prompt":"a"}"#);
    r.assert_error(429);
    assert_eq!(r.retry_after.as_deref(), Some("3"));
}

#[test]
fn protocol_errors() {
    let h = quick();
    h.post("/v1/completions", "{not json").assert_error(400);
    h.post("/v1/completions", r#"{"prompt":"a"}"#)
        .assert_error(400);
    h.post("/v1/completions", r#"{"model":"gen","prompt":{}}"#)
        .assert_error(400);
    h.get("/v1/nothing").assert_error(404);
    h.post("/nothing", "{}").assert_error(404);
    h.get("/v1/completions").assert_error(405);
}

#[test]
fn body_limit_413() {
    let config = ServerConfig {
        max_body_bytes: 1024,
        ..ServerConfig::default()
    };
    let h = start(config, FakeGenerator::new(3, Duration::ZERO), true);
    let big = format!(r#"{{"model":"emb","input":"{}"}}"#, "a".repeat(4000));
    h.post("/v1/embeddings", &big).assert_error(413);
    let ok = format!(r#"{{"model":"emb","input":"{}"}}"#, "a".repeat(500));
    assert_eq!(h.post("/v1/embeddings", &ok).status, 200);
}

#[test]
fn api_keys() {
    let config = ServerConfig {
        api_keys: vec!["k1".into(), "second-key".into()],
        ..ServerConfig::default()
    };
    let h = start(config, FakeGenerator::new(3, Duration::ZERO), true);
    let body = r#"{"model":"emb","input":"x"}"#;
    let e = h
        .post_to(&h.base, "/v1/embeddings", body, None)
        .assert_error(401);
    assert_eq!(e["error"]["code"], "invalid_api_key");
    h.post_to(&h.base, "/v1/embeddings", body, Some("k2"))
        .assert_error(401);
    h.post_to(&h.base, "/v1/embeddings", body, Some("second-ke"))
        .assert_error(401);
    assert_eq!(
        h.post_to(&h.base, "/v1/embeddings", body, Some("second-key"))
            .status,
        200
    );
    h.get("/v1/models").assert_error(401);
    assert_eq!(h.get_from(&h.base, "/v1/models", Some("k1")).status, 200);
    assert_eq!(h.get("/health").status, 200);
    assert_eq!(h.get("/metrics").status, 200);
}

#[test]
fn models_list() {
    let h = quick();
    let v = h.get("/v1/models").json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["emb", "gen", "busy"]);
    assert_eq!(v["data"][0]["object"], "model");
}

#[test]
fn metrics_names() {
    let h = quick();
    h.post("/v1/embeddings", r#"{"model":"emb","input":"x"}"#);
    h.post(
        "/v1/completions",
        r#"{"model":"gen","prompt":"ab","max_tokens":3}"#,
    );
    h.post("/v1/completions", r#"{"model":"nope","prompt":"ab"}"#);
    let r = h.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    for name in [
        "sparq:num_requests_running{model=\"gen\"}",
        "sparq:num_requests_waiting{model=\"emb\"}",
        "sparq:time_to_first_token_seconds_bucket",
        "sparq:inter_token_latency_seconds_count{model=\"gen\"} 2",
        "sparq:e2e_request_latency_seconds_count{model=\"gen\"} 1",
        "sparq:request_queue_time_seconds",
        "sparq:prompt_tokens_total{model=\"gen\"} 2",
        "sparq:generation_tokens_total{model=\"gen\"} 3",
        "sparq:kv_cache_usage_perc{device=\"fake0\",model=\"gen\"} 0.25",
        "sparq:batch_size{device=\"fake0\",model=\"gen\"} 1",
        "sparq:embeddings_total{model=\"emb\"} 1",
        "sparq:request_errors_total{status=\"404\"} 1",
    ] {
        assert!(r.body.contains(name), "{name} not in\n{}", r.body);
    }
}
