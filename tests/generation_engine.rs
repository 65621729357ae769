//! The continuous batching engine (`schedule::generation`) on tiny random decoders, on every
//! adapter: batched greedy and sampled requests give exactly what `Generator` gives for each
//! alone (prompts longer than a step are prefilled in chunks), a cache too small for all
//! preempts and still gives every stream unchanged, cancelled requests free their blocks, a
//! full queue answers 429, shutdown drains, and a replica whose device fails hands its
//! sequences to the other (or, alone, ends them with a clear error).
//!
//! Exact token equality holds because every row of a step is computed the same way whatever
//! the batch around it up to last bits, and neither greedy choices nor seeded draws on these
//! random models sit that close to a tie.

mod common;
#[path = "common/llama.rs"]
mod llama;

use common::{all_gpus, rng};
use llama::tokens;
use sparq::model::decode::{CacheUsage, CausalLm, Chunk, StepOutput};
use sparq::model::generate::{FinishReason, GenerateParams, Generator};
use sparq::model::kv::SeqId;
use sparq::model::llama::{DecoderOptions, LlamaConfig, LlamaDecoder, LlamaWeights, RopeLayout};
use sparq::model::sampling::SamplingParams;
use sparq::schedule::generation::{
    GenerationConfig, GenerationEngine, GenerationEvent, GenerationReplica, GenerationSummary,
    RequestHandle,
};
use sparq::{DeviceError, Error, Gpu, InputError, ServiceError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The devices, opened once for the process: the engine's threads need `'static` models.
fn gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(all_gpus)
}

fn config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 97,
        hidden_size: 44,
        num_layers: 2,
        num_heads: 6,
        num_kv_heads: 2,
        head_dim: 10,
        intermediate_size: 70,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        max_context: 256,
        tie_word_embeddings: true,
        attention_bias: false,
        rope_layout: RopeLayout::HalfSplit,
    }
}

fn weights(r: &mut rand::rngs::StdRng) -> LlamaWeights {
    llama::random_weights(&config(), r, safetensors::Dtype::F32)
}

fn decoder(
    gpu: &'static Gpu,
    w: &LlamaWeights,
    kv_tokens: Option<usize>,
) -> Arc<LlamaDecoder<'static>> {
    let options = DecoderOptions {
        kv_tokens,
        ..DecoderOptions::default()
    };
    let format = sparq::formats::WeightFormat::F32;
    Arc::new(LlamaDecoder::from_host(gpu, config(), w, format, options).unwrap())
}

fn engine(lms: Vec<Arc<dyn CausalLm>>, config: GenerationConfig) -> GenerationEngine {
    let replicas = lms
        .into_iter()
        .enumerate()
        .map(|(i, lm)| GenerationReplica {
            name: format!("replica {i}"),
            lm,
        })
        .collect();
    GenerationEngine::new(replicas, None, config).unwrap()
}

fn small(max_running: usize, max_waiting: usize, step_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        max_running,
        max_waiting,
        step_tokens,
    }
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ..GenerateParams::default()
    }
}

/// What `Generator` gives for `prompt` alone.
fn alone(lm: &dyn CausalLm, prompt: &[u32], params: &GenerateParams) -> Vec<u32> {
    Generator::new(lm, None)
        .generate(prompt, params, |_| {})
        .unwrap()
        .tokens
}

/// A request's events to its end: the pieces' tokens and the summary (or the failure).
fn collect(rx: &Receiver<GenerationEvent>) -> (Vec<u32>, Result<GenerationSummary, Error>) {
    let mut pieces = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("an event") {
            GenerationEvent::Piece(p) => pieces.push(p.token),
            GenerationEvent::Done(s) => return (pieces, Ok(s)),
            GenerationEvent::Failed(e) => return (pieces, Err(e)),
        }
    }
}

/// Submits every request at once and returns each one's generated tokens, checking that the
/// pieces and the summary agree.
fn run_all(
    engine: &GenerationEngine,
    requests: &[(Vec<u32>, GenerateParams)],
) -> Vec<GenerationSummary> {
    let subs: Vec<(RequestHandle, Receiver<GenerationEvent>)> = requests
        .iter()
        .map(|(p, params)| engine.submit_channel(p.clone(), params.clone()).unwrap())
        .collect();
    subs.iter()
        .zip(requests)
        .map(|((_, rx), (prompt, _))| {
            let (pieces, done) = collect(rx);
            let done = done.unwrap();
            assert_eq!(pieces, done.tokens, "pieces and summary");
            assert_eq!(done.prompt_tokens, prompt.len());
            assert!(done.queue_seconds <= done.first_token_seconds);
            assert!(done.first_token_seconds <= done.total_seconds);
            done
        })
        .collect()
}

/// A sink that passes events to `events` and holds the replica at the first piece until
/// `gate` opens (at most `limit`).
fn held_for(
    events: std::sync::mpsc::Sender<GenerationEvent>,
    gate: Receiver<()>,
    limit: Duration,
) -> sparq::schedule::generation::EventSink {
    let mut first = true;
    Box::new(move |ev: GenerationEvent| {
        let piece = matches!(ev, GenerationEvent::Piece(_));
        let _ = events.send(ev);
        if piece && std::mem::take(&mut first) {
            let _ = gate.recv_timeout(limit);
        }
        true
    })
}

fn held(
    events: std::sync::mpsc::Sender<GenerationEvent>,
    gate: Receiver<()>,
) -> sparq::schedule::generation::EventSink {
    held_for(events, gate, Duration::from_secs(30))
}

fn assert_all_free(lm: &dyn CausalLm, what: &str) {
    let CacheUsage {
        free_blocks,
        total_blocks,
        ..
    } = lm.cache_usage();
    assert_eq!(free_blocks, total_blocks, "{what}: every block free again");
}

#[test]
fn batched_greedy_and_sampled_requests_give_what_each_gives_alone() {
    let mut r = rng("engine batched");
    for gpu in gpus() {
        let w = weights(&mut r);
        let lm = decoder(gpu, &w, None);
        // Prompts longer than a step (16) are prefilled over several steps.
        let lens = [3, 40, 1, 17, 9, 33];
        let mut requests: Vec<(Vec<u32>, GenerateParams)> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| (tokens(&mut r, n, 97), greedy(6 + 2 * i)))
            .collect();
        for (i, (_, params)) in requests.iter_mut().enumerate().skip(3) {
            // Sampled (logits read back) next to greedy ones (argmax on the device).
            params.sampling = SamplingParams {
                temperature: 0.9,
                top_k: 30,
                top_p: 0.95,
                repetition_penalty: if i == 5 { 1.3 } else { 1.0 },
                seed: 1000 + i as u64,
            };
        }
        let want: Vec<Vec<u32>> = requests.iter().map(|(p, g)| alone(&*lm, p, g)).collect();
        // An EOS that comes stops its request there.
        let eos = want[0][2];
        requests[0].1.eos = vec![eos];
        let cut = want[0].iter().position(|&t| t == eos).unwrap();
        let e = engine(vec![lm.clone()], small(8, 16, 16));
        let got = run_all(&e, &requests);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            match i {
                0 => {
                    assert_eq!(g.tokens, w[..=cut], "{}: request 0 (EOS)", gpu.caps.name);
                    assert_eq!(g.finish, FinishReason::Eos);
                }
                _ => {
                    assert_eq!(&g.tokens, w, "{}: request {i}", gpu.caps.name);
                    assert_eq!(g.finish, FinishReason::Length);
                }
            }
            assert_eq!(g.preemptions, 0);
        }
        let stats = e.stats();
        let generated: usize = got.iter().map(|g| g.tokens.len()).sum();
        assert_eq!(stats.generated_tokens, generated as u64);
        assert_eq!(stats.prompt_tokens, lens.iter().sum::<usize>() as u64);
        assert_eq!((stats.waiting, stats.running, stats.preemptions), (0, 0, 0));
        assert!(stats.replicas[0].steps > 0 && stats.replicas[0].failed.is_none());
        assert!(e.drain(Duration::from_secs(10)));
        assert_all_free(&*lm, &gpu.caps.name);
    }
}

#[test]
fn a_cache_too_small_for_all_preempts_and_changes_no_stream() {
    let mut r = rng("engine preemption");
    for gpu in gpus() {
        let w = weights(&mut r);
        // Three blocks of 16: each request needs two at its end, so not all fit at once.
        let lm = decoder(gpu, &w, Some(48));
        let requests: Vec<(Vec<u32>, GenerateParams)> = (0..4)
            .map(|i| (tokens(&mut r, 11 + i, 97), greedy(16)))
            .collect();
        let want: Vec<Vec<u32>> = requests.iter().map(|(p, g)| alone(&*lm, p, g)).collect();
        let e = engine(vec![lm.clone()], small(4, 16, 32));
        let got = run_all(&e, &requests);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(&g.tokens, w, "{}: request {i}", gpu.caps.name);
        }
        let preempted: u32 = got.iter().map(|g| g.preemptions).sum();
        assert!(preempted > 0, "{}: nothing was preempted", gpu.caps.name);
        assert_eq!(e.stats().preemptions, preempted as u64);
        assert_all_free(&*lm, &gpu.caps.name);
    }
}

#[test]
fn cancelled_requests_leave_and_free_their_blocks() {
    let mut r = rng("engine cancel");
    for gpu in gpus() {
        let w = weights(&mut r);
        let lm = decoder(gpu, &w, None);
        let e = engine(vec![lm.clone()], small(4, 16, 16));
        // The sink holds the replica at the first piece until the handle is dropped.
        let (events, rx) = channel();
        let (open_gate, gate) = channel::<()>();
        let sink = held(events, gate);
        let handle = e.submit(tokens(&mut r, 20, 97), greedy(16), sink).unwrap();
        assert!(matches!(rx.recv().unwrap(), GenerationEvent::Piece(_)));
        drop(handle);
        open_gate.send(()).unwrap();
        let (pieces, end) = collect(&rx);
        assert!(pieces.is_empty(), "no piece after the cancel");
        assert!(
            matches!(end, Err(Error::Service(ServiceError::Cancelled))),
            "{end:?}"
        );
        assert_all_free(&*lm, &gpu.caps.name);
        // A client that stops listening cancels too.
        let (_handle, rx) = e.submit_channel(tokens(&mut r, 5, 97), greedy(16)).unwrap();
        drop(rx);
        assert!(e.drain(Duration::from_secs(30)));
        assert_all_free(&*lm, &gpu.caps.name);
    }
}

#[test]
fn a_full_queue_answers_overloaded_and_bad_requests_are_input_errors() {
    let mut r = rng("engine overload");
    for gpu in gpus() {
        let w = weights(&mut r);
        let lm = decoder(gpu, &w, None);
        let e = engine(vec![lm.clone()], small(1, 1, 16));
        let invalid = |res: sparq::Result<RequestHandle>| {
            matches!(res.err(), Some(Error::Input(InputError::Invalid(_))))
        };
        let sink = || Box::new(|_: GenerationEvent| true);
        assert!(invalid(e.submit(vec![], greedy(4), sink())), "empty prompt");
        assert!(
            invalid(e.submit(vec![97], greedy(4), sink())),
            "token out of vocabulary"
        );
        assert!(
            invalid(e.submit(vec![1; 250], greedy(7), sink())),
            "past the context"
        );
        let hot = SamplingParams {
            temperature: -1.0,
            ..SamplingParams::default()
        };
        let bad = GenerateParams {
            sampling: hot,
            ..greedy(4)
        };
        assert!(
            invalid(e.submit(vec![1], bad, sink())),
            "negative temperature"
        );
        // One request runs (held in its sink), one waits, the next is refused.
        let (events, rx) = channel();
        let (open_gate, gate) = channel::<()>();
        let _a = e
            .submit(tokens(&mut r, 4, 97), greedy(8), held(events, gate))
            .unwrap();
        assert!(matches!(rx.recv().unwrap(), GenerationEvent::Piece(_)));
        let (_b, rx_b) = e.submit_channel(tokens(&mut r, 4, 97), greedy(8)).unwrap();
        let refused = e
            .submit(tokens(&mut r, 4, 97), greedy(8), sink())
            .err()
            .unwrap();
        assert!(
            matches!(
                refused,
                Error::Service(ServiceError::Overloaded {
                    waiting: 1,
                    limit: 1,
                    ..
                })
            ),
            "{refused}"
        );
        assert_eq!(refused.http_status(), 429);
        assert_eq!(e.stats().waiting, 1);
        open_gate.send(()).unwrap();
        let (rest, first) = collect(&rx);
        assert_eq!(
            (rest.len(), first.unwrap().tokens.len()),
            (7, 8),
            "the first"
        );
        assert_eq!(collect(&rx_b).1.unwrap().tokens.len(), 8);
    }
}

#[test]
fn shutdown_drains_and_a_deadline_ends_the_rest() {
    let mut r = rng("engine drain");
    for gpu in gpus() {
        let w = weights(&mut r);
        let lm = decoder(gpu, &w, None);
        let e = engine(vec![lm.clone()], small(4, 16, 16));
        let subs: Vec<_> = (0..3)
            .map(|i| {
                e.submit_channel(tokens(&mut r, 5 + i, 97), greedy(10))
                    .unwrap()
            })
            .collect();
        assert!(e.drain(Duration::from_secs(30)), "all end by themselves");
        for (_, rx) in &subs {
            assert_eq!(collect(rx).1.unwrap().tokens.len(), 10);
        }
        let after = e
            .submit(vec![1, 2], greedy(2), Box::new(|_| true))
            .err()
            .unwrap();
        assert!(
            matches!(after, Error::Service(ServiceError::ShuttingDown)),
            "{after}"
        );
        assert_eq!(after.http_status(), 503);
        // Past the deadline, a running request (held in its sink) and a waiting one end
        // with ShuttingDown.
        let e = engine(vec![lm.clone()], small(1, 16, 16));
        let (events, rx) = channel();
        // The gate never opens: the sink holds the replica for its timeout.
        let (_shut_gate, gate) = channel::<()>();
        let held = held_for(events, gate, Duration::from_millis(300));
        let _a = e.submit(tokens(&mut r, 4, 97), greedy(16), held).unwrap();
        let (_b, rx_b) = e.submit_channel(tokens(&mut r, 4, 97), greedy(16)).unwrap();
        assert!(matches!(rx.recv().unwrap(), GenerationEvent::Piece(_)));
        assert!(!e.drain(Duration::from_millis(10)));
        let shut = |res: Result<GenerationSummary, Error>| {
            matches!(res, Err(Error::Service(ServiceError::ShuttingDown)))
        };
        assert!(shut(collect(&rx).1), "the running one");
        assert!(shut(collect(&rx_b).1), "the waiting one");
        assert_all_free(&*lm, &gpu.caps.name);
    }
}

/// A replica whose device is lost at its `fail_at`-th step (counting from 0).
struct Failing {
    lm: Arc<dyn CausalLm>,
    steps: AtomicUsize,
    fail_at: usize,
}

impl CausalLm for Failing {
    fn vocab_size(&self) -> usize {
        self.lm.vocab_size()
    }
    fn max_context(&self) -> usize {
        self.lm.max_context()
    }
    fn open(&self) -> SeqId {
        self.lm.open()
    }
    fn close(&self, seq: SeqId) {
        self.lm.close(seq)
    }
    fn len(&self, seq: SeqId) -> sparq::Result<usize> {
        self.lm.len(seq)
    }
    fn truncate(&self, seq: SeqId, len: usize) -> sparq::Result<()> {
        self.lm.truncate(seq, len)
    }
    fn cache_usage(&self) -> CacheUsage {
        self.lm.cache_usage()
    }
    fn blocks_needed(&self, seq: SeqId, extra: usize) -> sparq::Result<usize> {
        self.lm.blocks_needed(seq, extra)
    }
    fn step(&self, chunks: &[Chunk<'_>]) -> sparq::Result<StepOutput> {
        match self.steps.fetch_add(1, Ordering::SeqCst) >= self.fail_at {
            true => Err(DeviceError::Lost("injected by the test".into()).into()),
            false => self.lm.step(chunks),
        }
    }
}

fn failing(lm: Arc<dyn CausalLm>, fail_at: usize) -> Arc<dyn CausalLm> {
    Arc::new(Failing {
        lm,
        steps: AtomicUsize::new(0),
        fail_at,
    })
}

#[test]
fn a_failed_replica_hands_its_sequences_over_or_ends_them_clearly() {
    let mut r = rng("engine replica failure");
    for gpu in gpus() {
        let w = weights(&mut r);
        let (lm_a, lm_b) = (decoder(gpu, &w, None), decoder(gpu, &w, None));
        let requests: Vec<(Vec<u32>, GenerateParams)> = (0..6)
            .map(|i| (tokens(&mut r, 3 + 4 * i, 97), greedy(12)))
            .collect();
        let want: Vec<Vec<u32>> = requests.iter().map(|(p, g)| alone(&*lm_b, p, g)).collect();
        let e = engine(
            vec![failing(lm_a.clone(), 3), lm_b.clone()],
            small(2, 16, 16),
        );
        let got = run_all(&e, &requests);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(&g.tokens, w, "{}: request {i}", gpu.caps.name);
        }
        let stats = e.stats();
        let lost = stats.replicas[0].failed.as_deref().unwrap_or("");
        assert!(lost.contains("injected"), "replica 0 taken out: {lost:?}");
        assert!(stats.replicas[1].failed.is_none());
        assert_all_free(&*lm_a, "the failed replica");
        assert_all_free(&*lm_b, "the live replica");
        drop(e);
        // Alone, the failing replica ends every request with the failure, and refuses more.
        let e = engine(vec![failing(lm_a.clone(), 2)], small(2, 16, 16));
        let subs: Vec<_> = (0..3)
            .map(|i| {
                e.submit_channel(tokens(&mut r, 4 + i, 97), greedy(12))
                    .unwrap()
            })
            .collect();
        for (_, rx) in &subs {
            let end = collect(rx).1.expect_err("a failure");
            assert!(
                matches!(&end, Error::Device(DeviceError::NoDeviceLeft(m)) if m.contains("injected")),
                "{end}"
            );
        }
        let later = e
            .submit(vec![1], greedy(2), Box::new(|_| true))
            .err()
            .unwrap();
        assert!(
            matches!(later, Error::Device(DeviceError::NoDeviceLeft(_))),
            "{later}"
        );
        assert!(e.drain(Duration::from_secs(5)));
        assert_all_free(&*lm_a, "the failed replica");
    }
}
