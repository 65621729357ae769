//! Loading, disconnects, deadlines and the graceful shutdown, with fake services.

mod common;

use common::{FakeGenerator, events, start};
use sparq_server::{Phase, ServerConfig};
use std::io::{BufRead, BufReader};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn loading_answers_503_until_ready() {
    let h = start(
        ServerConfig::default(),
        FakeGenerator::new(2, Duration::ZERO),
        false,
    );
    let r = h.get("/health");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "loading");
    h.get("/v1/models").assert_error(503);
    h.post("/v1/completions", r#"{"model":"gen","prompt":"a"}"#)
        .assert_error(503);
    assert_eq!(h.get("/metrics").status, 200);
    h.server.set_ready();
    let r = h.get("/health");
    assert_eq!((r.status, r.json()["status"].clone()), (200, "ok".into()));
    assert_eq!(
        h.post("/v1/completions", r#"{"model":"gen","prompt":"a"}"#)
            .status,
        200
    );
}

#[test]
fn disconnect_mid_stream_cancels() {
    let h = start(
        ServerConfig::default(),
        FakeGenerator::new(1000, Duration::from_millis(5)),
        true,
    );
    let resp = h
        .agent
        .post(format!("{}/v1/completions", h.base))
        .header("Content-Type", "application/json")
        .send(r#"{"model":"gen","prompt":"a","max_tokens":60,"stream":true}"#)
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut lines = BufReader::new(resp.into_body().into_reader());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert!(first.starts_with("data: {"), "{first:?}");
    assert_eq!(h.gen_model.cancelled.load(Ordering::Acquire), 0);
    drop(lines);
    let g = &h.gen_model;
    wait_for("the cancel", || g.cancelled.load(Ordering::Acquire) == 1);
    wait_for("the end", || g.active.load(Ordering::Acquire) == 0);
}

#[test]
fn timeouts_504_and_error_chunk() {
    let config = ServerConfig {
        request_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let h = start(
        config,
        FakeGenerator::new(40, Duration::from_millis(20)),
        true,
    );
    let e = h
        .post(
            "/v1/completions",
            r#"{"model":"gen","prompt":"a","max_tokens":40}"#,
        )
        .assert_error(504);
    assert_eq!(e["error"]["type"], "timeout");
    let r = h.post(
        "/v1/completions",
        r#"{"model":"gen","prompt":"a","max_tokens":40,"stream":true}"#,
    );
    assert_eq!(r.status, 200);
    let ev = events(&r.body);
    let last: serde_json::Value = serde_json::from_str(&ev[ev.len() - 2]).unwrap();
    assert_eq!(last["error"]["type"], "timeout", "{}", r.body);
    assert!(
        ev.len() >= 3,
        "some text came before the deadline: {}",
        r.body
    );
    // Both requests were cancelled in the engine when their deadline passed.
    let g = &h.gen_model;
    wait_for("the cancels", || g.cancelled.load(Ordering::Acquire) == 2);
    let m = h.get("/metrics").body;
    assert!(
        m.contains("sparq:request_errors_total{status=\"504\"} 2"),
        "{m}"
    );
}

#[test]
fn shutdown_drains_an_in_flight_stream() {
    let mut h = start(
        ServerConfig::default(),
        FakeGenerator::new(12, Duration::from_millis(30)),
        true,
    );
    let resp = h
        .agent
        .post(format!("{}/v1/completions", h.base))
        .header("Content-Type", "application/json")
        .send(r#"{"model":"gen","prompt":"a","max_tokens":12,"stream":true}"#)
        .unwrap();
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let mut body = String::new();
    reader.read_line(&mut body).unwrap();
    h.shutdown();
    wait_for("the phase", || h.server.phase() == Phase::ShuttingDown);
    // The side listener serves the same state: what a request arriving now gets.
    let r = h.get_from(&h.side, "/health", None);
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (503, "shutting_down".into())
    );
    h.post_to(
        &h.side,
        "/v1/completions",
        r#"{"model":"gen","prompt":"a"}"#,
        None,
    )
    .assert_error(503);
    std::io::Read::read_to_string(&mut reader, &mut body).unwrap();
    let ev = events(&body);
    let text: String = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap())
        .map(|c| c["choices"][0]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, FakeGenerator::text(12));
    h.join().unwrap();
    assert!(h.gen_model.drained.load(Ordering::Acquire));
    assert_eq!(h.gen_model.cancelled.load(Ordering::Acquire), 0);
    assert!(h.gen_model.closed.load(Ordering::Acquire));
}
