//! A bounded load test of a real `sparq serve`: a small queue (`--max-waiting`), about twice
//! its capacity in concurrent requests from the load generator, a fixed number of requests and
//! a time limit. Every request must get a full answer or a 429/503, the server's own counters
//! must say it answered every request it accepted, and its memory must stay bounded.

mod served;

use served::{KEY, Served, metric_sum};
use sparq_server::loadgen::{self, Config, Kind, LevelReport};
use std::time::{Duration, Instant};

/// Requests the server queues per model beyond those running.
const MAX_WAITING: usize = 4;
/// In flight at once: about twice what the server takes (running + waiting).
const CONCURRENCY: usize = 4 * MAX_WAITING;
/// The server's counters of requests accepted into a queue and answered.
const ACCEPTED: &str = "sparq:requests_accepted_total";
const ANSWERED: &str = "sparq:requests_answered_total";

fn load(server: &Served, kind: Kind, model: &str, requests: usize) -> LevelReport {
    let mut c = Config::new(&server.url, kind, model);
    c.api_key = Some(KEY.into());
    c.concurrency = vec![CONCURRENCY];
    c.requests = requests;
    // Short prompts and answers: on a 2-core CPU adapter a decoder runs a few tokens a
    // second, and the test is about bounds and bookkeeping, not speed. The limits only catch
    // a hang: at twice capacity the slowest accepted request waits behind a full queue.
    if kind == Kind::Completions {
        c.texts = ["Hello", "The sea is", "One, two,", "Paris is"]
            .map(String::from)
            .to_vec();
    }
    c.max_tokens = 2;
    c.request_timeout = Duration::from_secs(300);
    c.time_limit = Duration::from_secs(600);
    let r = loadgen::run(&c).expect("the load generator starts");
    println!("{}", r.markdown());
    assert!(!r.stopped_by_time_limit, "the load did not finish in time");
    let l = r.levels.into_iter().next().expect("one level");
    // A full answer, or a clear refusal: nothing cut, dropped or malformed.
    assert_eq!(
        l.timed_out + l.http_errors + l.failed,
        0,
        "{:?}\nserver log:\n{}",
        l.first_error,
        server.log()
    );
    assert_eq!(l.ok + l.rejected_429 + l.unavailable_503, requests);
    assert!(l.ok > 0, "nothing was answered: {:?}", l.first_error);
    l
}

/// Accepted and answered as the server counts them, once they agree (a response is counted
/// as it ends, a moment after the client has read it), or after a few seconds.
fn counters(server: &Served) -> (f64, f64) {
    let start = Instant::now();
    loop {
        let (status, text) = server.get("/metrics");
        assert_eq!(status, 200, "/metrics: {text}");
        let (a, b) = (metric_sum(&text, ACCEPTED), metric_sum(&text, ANSWERED));
        if a == b || start.elapsed() > Duration::from_secs(5) {
            return (a, b);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn twice_capacity_gets_answers_or_refusals() {
    let Some(models) = served::models() else {
        return;
    };
    let waiting = MAX_WAITING.to_string();
    let server = Served::start(
        &[
            "--model",
            models[0],
            "--model",
            models[1],
            "--max-waiting",
            &waiting,
        ],
        Duration::from_secs(300),
    );
    let rss0 = server.rss_kib().expect("VmRSS of the server");

    let mut ok = 0;
    let e = load(&server, Kind::Embeddings, "minilm", 64);
    let g = load(&server, Kind::Completions, "smollm2", 32);
    ok += e.ok + g.ok;
    let rss1 = server.rss_kib().expect("VmRSS of the server");
    let (accepted, answered) = counters(&server);
    assert_eq!(accepted, answered, "accepted != answered");
    assert_eq!(
        answered as usize, ok,
        "the server answered {answered}, the client got {ok}"
    );

    // A second, identical wave: a server that keeps its bounds does not grow with the load.
    let e = load(&server, Kind::Embeddings, "minilm", 64);
    let g = load(&server, Kind::Completions, "smollm2", 32);
    ok += e.ok + g.ok;
    let rss2 = server.rss_kib().expect("VmRSS of the server");
    let (accepted, answered) = counters(&server);
    assert_eq!(accepted, answered, "accepted != answered");
    assert_eq!(answered as usize, ok);
    println!("VmRSS: {rss0} KiB at start, {rss1} after one wave, {rss2} after two");
    assert!(
        rss1 < rss0 + 512 * 1024,
        "the first wave grew the server by {} KiB",
        rss1 - rss0
    );
    assert!(
        rss2 < rss1 + 64 * 1024,
        "the second wave grew the server by {} KiB",
        rss2.saturating_sub(rss1)
    );
}
