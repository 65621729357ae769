//! The embedding service (dynamic batching over a cluster) on all-MiniLM-L6-v2: whatever pass
//! a request shares or however it is split, its vectors equal the model's forward pass of each
//! input alone, bit for bit; the queue's limits answer with service errors; a failed device's
//! work re-runs on the other and nothing hangs when all have failed.

mod common;

use common::all_gpus;
use common::minilm::{fixture, model_dir};
use sparq::model::{Batch, LoadOptions, Model};
use sparq::schedule::embedding::{EmbedInput, Embedded, EmbeddingConfig, EmbeddingService};
use sparq::schedule::{FaultKind, Injection};
use sparq::{Error, ErrorKind, Gpu, ServiceError};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The fixture's short sentences (at most 8 tokens: one padded length, few token rows per
/// pass, so the CPU adapters finish quickly) and their PyTorch token ids.
fn short() -> (Vec<String>, Vec<Vec<u32>>) {
    let f = fixture();
    let keep: Vec<usize> = (0..f.ids.len()).filter(|&i| f.ids[i].len() <= 8).collect();
    assert!(
        keep.len() >= 3,
        "the fixture has {} short sentences",
        keep.len()
    );
    (
        keep.iter().map(|&i| f.sentences[i].clone()).collect(),
        keep.iter().map(|&i| f.ids[i].clone()).collect(),
    )
}

/// Each short sentence alone through a batch-invariant model on `gpu`: the reference (kept
/// per adapter, as the tests share them).
fn references(gpu: &Gpu) -> Vec<Vec<f32>> {
    static CACHE: Mutex<Vec<(String, Vec<Vec<f32>>)>> = Mutex::new(Vec::new());
    let key = format!("{} ({})", gpu.caps.name, gpu.caps.backend);
    // Held while computing, so that tests running at once compute each adapter's once.
    let mut cache = CACHE.lock().unwrap();
    if let Some((_, r)) = cache.iter().find(|(k, _)| *k == key) {
        return r.clone();
    }
    let options = LoadOptions::default().batch_invariant(true);
    let model = Model::load_with(model_dir(), gpu, options).unwrap();
    let refs: Vec<Vec<f32>> = short()
        .0
        .iter()
        .map(|s| model.forward(&Batch::text([s])).unwrap().row(0).to_vec())
        .collect();
    cache.push((key, refs.clone()));
    refs
}

fn open(gpus: Vec<Arc<Gpu>>, config: EmbeddingConfig) -> EmbeddingService {
    // Batch-invariant: the tests compare vectors bit for bit with the input alone.
    let options = LoadOptions::default().batch_invariant(true);
    EmbeddingService::open(&model_dir(), gpus, options, config).unwrap()
}

/// Submits `inputs`; the receiver gets the answer.
fn submit(
    svc: &EmbeddingService,
    inputs: Vec<EmbedInput>,
) -> mpsc::Receiver<sparq::Result<Embedded>> {
    let (tx, rx) = mpsc::channel();
    svc.submit(
        inputs,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )
    .unwrap();
    rx
}

fn answer(rx: &mpsc::Receiver<sparq::Result<Embedded>>) -> sparq::Result<Embedded> {
    rx.recv_timeout(Duration::from_secs(60))
        .expect("no answer within 60 s")
}

fn texts(s: &[String]) -> Vec<EmbedInput> {
    s.iter().cloned().map(EmbedInput::Text).collect()
}

/// Asserts that `got` holds the references of `which` (indices into the sentences), in order.
fn assert_vectors(got: &Embedded, refs: &[Vec<f32>], which: &[usize], what: &str) {
    assert_eq!(got.vectors.len(), which.len(), "{what}: vectors");
    for (k, (&i, v)) in which.iter().zip(&got.vectors).enumerate() {
        assert_eq!(bits(v), bits(&refs[i]), "{what}: input {k} (sentence {i})");
    }
}

#[test]
fn vectors_equal_the_model_alone_for_text_and_token_inputs() {
    let (sentences, ids) = short();
    for gpu in all_gpus() {
        let gpu = Arc::new(gpu);
        let name = gpu.caps.name.clone();
        let refs = references(&gpu);
        let svc = open(vec![gpu], EmbeddingConfig::default());
        assert_eq!(svc.dimension(), 384);
        assert_eq!(svc.max_tokens(), 256);
        let all: Vec<usize> = (0..sentences.len()).collect();
        let text = answer(&submit(&svc, texts(&sentences))).unwrap();
        assert_vectors(&text, &refs, &all, &name);
        // PyTorch's tokenizer ids of the same sentences give the same vectors.
        let tokens = ids.iter().cloned().map(EmbedInput::Tokens).collect();
        let tokens = answer(&submit(&svc, tokens)).unwrap();
        assert_vectors(&tokens, &refs, &all, &format!("{name}, token ids"));
        let n: usize = ids.iter().map(Vec::len).sum();
        assert_eq!((text.prompt_tokens, tokens.prompt_tokens), (n, n));
        assert!(0.0 <= text.queue_seconds && text.queue_seconds <= text.total_seconds);
        // An empty string is its special tokens.
        let empty = answer(&submit(&svc, vec![EmbedInput::Text(String::new())])).unwrap();
        assert_eq!((empty.vectors.len(), empty.prompt_tokens), (1, 2));
        let s = svc.stats();
        assert_eq!(s.embedded, 2 * sentences.len() as u64 + 1);
        assert_eq!(s.tokens, 2 * n as u64 + 2);
        assert_eq!((s.waiting, s.batches, s.last_batch_rows), (0, 3, 1));
        assert_eq!(s.devices.len(), 1);
        assert!(s.devices[0].1.is_none(), "{:?}", s.devices);
    }
}

#[test]
fn a_request_over_the_budget_is_split_and_exact() {
    let (sentences, ids) = short();
    // Packing does not depend on the adapter (the vectors' exactness on each is tested above).
    let gpu = Arc::new(all_gpus().into_iter().next().unwrap());
    let name = gpu.caps.name.clone();
    let refs = references(&gpu);
    let longest = ids.iter().map(Vec::len).max().unwrap();
    // Two rows of the longest sentence per pass.
    let config = EmbeddingConfig {
        max_batch_tokens: 2 * longest,
        ..Default::default()
    };
    let svc = open(vec![gpu], config);
    let which: Vec<usize> = (0..5).map(|i| i % sentences.len()).collect();
    let inputs: Vec<String> = which.iter().map(|&i| sentences[i].clone()).collect();
    let got = answer(&submit(&svc, texts(&inputs))).unwrap();
    assert_vectors(&got, &refs, &which, &name);
    let s = svc.stats();
    // First come, first served while rows × longest ≤ the budget.
    let (mut passes, mut rows, mut widest) = (1, 0, 0);
    for &i in &which {
        let w = ids[i].len().max(widest);
        if rows > 0 && (rows + 1) * w > 2 * longest {
            (passes, rows, widest) = (passes + 1, 1, ids[i].len());
        } else {
            (rows, widest) = (rows + 1, w);
        }
    }
    assert!(passes > 1);
    assert_eq!(
        (s.batches, s.last_batch_rows),
        (passes, rows),
        "{name}: passes, rows of the last"
    );
    assert_eq!(s.embedded, which.len() as u64);
}

#[test]
fn concurrent_small_requests_share_passes() {
    let (sentences, _) = short();
    let gpu = Arc::new(all_gpus().into_iter().next().unwrap());
    let refs = references(&gpu);
    let config = EmbeddingConfig {
        window: Duration::from_millis(50),
        ..Default::default()
    };
    let svc = open(vec![gpu], config);
    let (threads, each) = (3, 3);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (svc, sentences, refs) = (&svc, &sentences, &refs);
            s.spawn(move || {
                let rxs: Vec<_> = (0..each)
                    .map(|k| {
                        let i = (t * each + k) % sentences.len();
                        (i, submit(svc, texts(&sentences[i..i + 1])))
                    })
                    .collect();
                for (i, rx) in rxs {
                    assert_vectors(&answer(&rx).unwrap(), refs, &[i], "concurrent");
                }
            });
        }
    });
    let s = svc.stats();
    assert_eq!(s.embedded, (threads * each) as u64);
    assert!(
        s.batches < (threads * each) as u64,
        "{} requests took {} passes",
        threads * each,
        s.batches
    );
}

#[test]
fn input_errors_overload_close_and_drain() {
    let (sentences, _) = short();
    let gpu = Arc::new(all_gpus().into_iter().next().unwrap());
    let config = EmbeddingConfig {
        window: Duration::from_secs(1),
        max_waiting: 3,
        ..Default::default()
    };
    let svc = open(vec![gpu], config);
    let refuse = |inputs: Vec<EmbedInput>| -> Error {
        svc.submit(
            inputs,
            Box::new(|_| panic!("a refused request got an answer")),
        )
        .unwrap_err()
    };
    let four: Vec<String> = (0..4)
        .map(|i| sentences[i % sentences.len()].clone())
        .collect();
    for (inputs, what) in [
        (vec![], "no input"),
        (vec![EmbedInput::Tokens(vec![])], "no tokens"),
        (
            vec![EmbedInput::Tokens(vec![101, 30522, 102])],
            "id outside the vocabulary",
        ),
        (vec![EmbedInput::Tokens(vec![101; 257])], "over max_tokens"),
        (texts(&four), "more than the queue holds"),
    ] {
        let e = refuse(inputs);
        assert_eq!(
            (e.kind(), e.http_status()),
            (ErrorKind::Input, 400),
            "{what}: {e}"
        );
    }
    assert_eq!(svc.stats().waiting, 0);
    let first = submit(&svc, texts(&sentences[..2]));
    let second = submit(&svc, texts(&sentences[2..3]));
    let e = refuse(texts(&sentences[..1]));
    assert!(
        matches!(
            e,
            Error::Service(ServiceError::Overloaded {
                waiting: 3,
                limit: 3,
                ..
            })
        ),
        "{e}"
    );
    assert_eq!(e.http_status(), 429);
    assert_eq!(svc.stats().waiting, 3);
    assert!(svc.drain(Duration::from_secs(60)));
    // Drained: both were answered before drain returned, in one pass.
    assert_eq!(first.try_recv().unwrap().unwrap().vectors.len(), 2);
    assert_eq!(second.try_recv().unwrap().unwrap().vectors.len(), 1);
    assert_eq!(svc.stats().batches, 1);
    let e = refuse(texts(&sentences[..1]));
    assert!(
        matches!(e, Error::Service(ServiceError::ShuttingDown)),
        "{e}"
    );
    assert_eq!(e.http_status(), 503);
}

#[test]
fn a_failed_device_is_survived_and_all_failed_answers_errors() {
    let (sentences, _) = short();
    let first = Arc::new(all_gpus().into_iter().next().unwrap());
    let second =
        Arc::new(Gpu::from_adapter(first.adapter.clone(), &sparq::gpu::instance()).unwrap());
    let refs = references(&first);
    // A window, so that each round's requests share one pass of 24 rows: the cluster splits
    // that over both devices (a small pass would all go to one, and the fault never fire).
    let config = EmbeddingConfig {
        window: Duration::from_millis(200),
        ..Default::default()
    };
    let svc = open(vec![first, second], config);
    let n = sentences.len();
    // Rounds of concurrent requests; the fault is injected after the first round and hits
    // device 1 at its next micro-batch, while the other device's work is in flight.
    let round = |r: usize| {
        let rxs: Vec<_> = (0..3)
            .map(|k| {
                let which: Vec<usize> = (0..8).map(|j| (r + k + j) % n).collect();
                let inputs: Vec<String> = which.iter().map(|&i| sentences[i].clone()).collect();
                (which, submit(&svc, texts(&inputs)))
            })
            .collect();
        for (which, rx) in rxs {
            assert_vectors(&answer(&rx).unwrap(), &refs, &which, &format!("round {r}"));
        }
    };
    round(0);
    svc.inject(
        1,
        Injection::Fail {
            after: 1,
            kind: FaultKind::DeviceLost,
        },
    )
    .unwrap();
    for r in 1..5 {
        round(r);
        if svc.stats().devices[1].1.is_some() {
            break;
        }
    }
    let devices = svc.stats().devices;
    assert!(
        devices[0].1.is_none() && devices[1].1.is_some(),
        "{devices:?}"
    );
    assert!(svc.inject(2, Injection::Delay(Duration::ZERO)).is_err());
    svc.inject(
        0,
        Injection::Fail {
            after: 1,
            kind: FaultKind::OutOfMemory,
        },
    )
    .unwrap();
    let rxs: Vec<_> = (0..3)
        .map(|k| submit(&svc, texts(&sentences[k..k + 1])))
        .collect();
    for rx in rxs {
        let e = answer(&rx).unwrap_err();
        assert_eq!((e.kind(), e.http_status()), (ErrorKind::Device, 503), "{e}");
    }
    // Later requests fail too, at once; nothing hangs, dropping included.
    let e = answer(&submit(&svc, texts(&sentences[..1]))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Device, "{e}");
    let devices = svc.stats().devices;
    assert!(devices.iter().all(|d| d.1.is_some()), "{devices:?}");
    drop(svc);
}

#[test]
fn dropping_a_busy_service_answers_every_request() {
    let (sentences, _) = short();
    let gpu = Arc::new(all_gpus().into_iter().next().unwrap());
    let config = EmbeddingConfig {
        window: Duration::from_secs(5),
        ..Default::default()
    };
    let svc = open(vec![gpu], config);
    let mut rxs: Vec<_> = (0..3)
        .map(|k| submit(&svc, texts(&sentences[k..k + 1])))
        .collect();
    // The longest token array is taken (and, dropped before its pass, costs no forward).
    rxs.push(submit(&svc, vec![EmbedInput::Tokens(vec![1000; 256])]));
    drop(svc);
    for rx in rxs {
        let e = answer(&rx).unwrap_err();
        assert!(
            matches!(e, Error::Service(ServiceError::ShuttingDown)),
            "{e}"
        );
    }
}
