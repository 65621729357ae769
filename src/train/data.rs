//! The distillation data sets on the host: English sentences to run a teacher on (State of the
//! Union addresses, Wikipedia lead sections) and a labelled set (movie-review snippets with
//! human sentiment ratings), read from the files `scripts/setup.sh` fetches into `data/`
//! (`data/README` says where each comes from), and split into training and held-out text.
//!
//! Held-out text is kept apart from training text twice over: whole documents (a speech, an
//! article) go to one side by a hash of their name, so that no paragraph is split across the
//! sides, and a training sentence that also occurs in held-out text (a stock phrase of two
//! speeches) is dropped.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::error::{Error, Result, file_error, read_text};

/// The share of documents (or labelled snippets) held out, in percent.
pub const HELD_OUT_PERCENT: u32 = 10;

/// The fewest words a kept sentence has: shorter pieces are mostly headings, salutations and
/// splitter mistakes ("(Applause.)", "Mr.").
pub const MIN_WORDS: usize = 3;

/// The most words a kept sentence has: longer ones are rare (legal prose of the early
/// speeches) and would dominate a batch padded to its longest row.
pub const MAX_WORDS: usize = 64;

/// One document of a corpus: its name (what the split hashes) and its sentences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// A name unique within the corpus (a file stem, an article title).
    pub name: String,
    /// Its sentences, in order ([`split_sentences`]).
    pub sentences: Vec<String>,
}

/// Sentences for training and for held-out evaluation, with no sentence on both sides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sentences {
    /// Training sentences.
    pub train: Vec<String>,
    /// Held-out sentences.
    pub held_out: Vec<String>,
}

impl Sentences {
    /// Splits `docs` by document: a document is held out when [`held_out`] says so of its
    /// name. Each side keeps the first occurrence of a sentence only (repeats waste teacher
    /// runs and weight an evaluation), and training drops sentences that are held out.
    pub fn split(docs: &[Document], held_out_percent: u32) -> Sentences {
        let (held, train): (Vec<&Document>, Vec<&Document>) = docs
            .iter()
            .partition(|d| held_out(&d.name, held_out_percent));
        let mut seen = HashSet::new();
        let held_out: Vec<String> = unique(&held, &mut seen);
        let train = unique(&train, &mut seen);
        Sentences { train, held_out }
    }
}

/// The sentences of `docs` not in `seen`, in order, each once; adds them to `seen`.
fn unique(docs: &[&Document], seen: &mut HashSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for s in docs.iter().flat_map(|d| &d.sentences) {
        if seen.insert(s.clone()) {
            out.push(s.clone());
        }
    }
    out
}

/// Labelled snippets (text, class) for training and for held-out evaluation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Labelled {
    /// Training snippets.
    pub train: Vec<(String, u32)>,
    /// Held-out snippets.
    pub held_out: Vec<(String, u32)>,
}

impl Labelled {
    /// Splits `items` by a hash of each text ([`held_out`]): the snippets have no documents,
    /// and hashing the text sends a snippet that occurs twice to one side both times.
    pub fn split(items: Vec<(String, u32)>, held_out_percent: u32) -> Labelled {
        let (held_out, train) = items
            .into_iter()
            .partition(|(text, _)| held_out(text, held_out_percent));
        Labelled { train, held_out }
    }
}

/// Whether the document named `name` is held out: its stable hash falls in the first
/// `percent` of 100 buckets. A function of the name alone (no random state), so the split is
/// the same on every run and machine, and adding a document moves no other.
pub fn held_out(name: &str, percent: u32) -> bool {
    // FNV-1a, then SplitMix64's finalizer: FNV's low bits alone are poorly mixed for a modulus.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h % 100 < percent as u64
}

/// The sentences of `text`, each with its whitespace collapsed to single spaces, kept when
/// they have [`MIN_WORDS`]`..=`[`MAX_WORDS`] words.
///
/// A sentence ends at a run of `.`, `?` or `!`, with any closing quotes or brackets after it,
/// when whitespace and then a capital letter (after any opening quotes or brackets) follow.
/// A single `.` does not end one after a title (`Mr.`, `Dr.`, `Gen.`, ...), an initial
/// (`Arthur C. Clarke`) or dotted letters (`U.S.`, `D.C.`), so "the U.S. Congress" stays
/// whole, at the price of joining two sentences where such a word ends the first. Other
/// abbreviations ("etc.", "No.") split there; the pieces are then usually too short to keep.
pub fn split_sentences(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..words.len() {
        let next = words.get(i + 1);
        if next.is_none_or(|n| ends_sentence(words[i]) && starts_sentence(n)) {
            let sentence = &words[start..=i];
            if (MIN_WORDS..=MAX_WORDS).contains(&sentence.len()) {
                out.push(sentence.join(" "));
            }
            start = i + 1;
        }
    }
    out
}

/// Whether `word` ends its sentence: it ends in terminal punctuation (then any closing quotes
/// or brackets) and is not an abbreviation.
fn ends_sentence(word: &str) -> bool {
    let bare = word.trim_end_matches(['"', '\'', '”', '’', ')', ']']);
    let Some(stem) = bare.strip_suffix(['.', '?', '!']) else {
        return false;
    };
    if !bare.ends_with('.') || stem.ends_with(['.', '?', '!']) {
        // `?`, `!` and ellipses always end a sentence.
        return true;
    }
    let stem = stem.trim_start_matches(['"', '\'', '“', '‘', '(', '[']);
    !is_abbreviation(stem)
}

/// Whether `word` starts a sentence: a capital letter, after any opening quotes or brackets.
fn starts_sentence(word: &str) -> bool {
    word.trim_start_matches(['"', '\'', '“', '‘', '(', '['])
        .chars()
        .next()
        .is_some_and(char::is_uppercase)
}

/// Titles that precede a name, whose `.` is not a sentence's end.
const TITLES: &[&str] = &[
    "Mr", "Mrs", "Ms", "Messrs", "Dr", "St", "Jr", "Sr", "Gen", "Gov", "Sen", "Rep", "Hon", "Rev",
    "Prof", "Col", "Capt", "Lt", "Maj", "Sgt", "Adm", "Mt", "Ft",
];

/// Whether `stem` (a word without its final `.`) is a title, an initial or dotted letters.
fn is_abbreviation(stem: &str) -> bool {
    TITLES.contains(&stem)
        || (!stem.is_empty()
            && stem
                .split('.')
                .all(|part| part.chars().count() == 1 && part.chars().all(char::is_alphabetic)))
}

/// The State of the Union addresses: one document per `*.txt` file of `dir` (named by the
/// file's stem, e.g. `1790_george_washington_n`), in the order of the names.
pub fn sotu(dir: impl AsRef<Path>) -> Result<Vec<Document>> {
    let dir = dir.as_ref();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| file_error(dir, e))? {
        let path = entry.map_err(|e| file_error(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "txt") && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no .txt files (scripts/setup.sh fetches the speeches)",
            dir.display()
        )));
    }
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            Ok(Document {
                name: name.into_owned(),
                sentences: split_sentences(&read_text(path)?),
            })
        })
        .collect()
}

/// One article of the Wikipedia summaries; the other fields (title, description, topic) are
/// not read.
#[derive(serde::Deserialize)]
struct Article {
    extract: String,
}

/// The Wikipedia lead sections of `path` (`summaries_en-us.json`: an object from each title
/// to `{"title", "extract", "description", "topic"}`): one document per article, named by
/// its title, in the order of the titles.
pub fn wiki(path: impl AsRef<Path>) -> Result<Vec<Document>> {
    let path = path.as_ref();
    let articles: BTreeMap<String, Article> =
        serde_json::from_str(&read_text(path)?).map_err(|e| {
            Error::invalid(format!(
                "{}: not an object of articles with an \"extract\" each: {e}",
                path.display()
            ))
        })?;
    Ok(articles
        .into_iter()
        .map(|(name, a)| Document {
            name,
            sentences: split_sentences(&a.extract),
        })
        .collect())
}

/// The rated snippets of `path` (`movieReviewSnippets_GroundTruth.txt`: lines of
/// `ID<TAB>MEAN-RATING<TAB>TEXT`, ratings from -4 to 4), as (text, label): 1 for a positive
/// rating, 0 for a negative one; snippets rated exactly 0 have no label and are dropped.
pub fn sentiment(path: impl AsRef<Path>) -> Result<Vec<(String, u32)>> {
    let path = path.as_ref();
    let text = read_text(path)?;
    let mut out = Vec::new();
    let mut lines = 0;
    for (n, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        let bad = |why: &str| {
            let shown: String = line.chars().take(60).collect();
            Error::invalid(format!(
                "{}:{}: {why} (expected ID<TAB>RATING<TAB>TEXT): {shown:?}",
                path.display(),
                n + 1
            ))
        };
        let mut fields = line.splitn(3, '\t');
        let (Some(id), Some(rating), Some(snippet)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("fewer than 3 tab-separated fields"));
        };
        if id.trim().parse::<u64>().is_err() {
            return Err(bad("the ID is not a whole number"));
        }
        let rating: f64 = match rating.trim().parse() {
            Ok(r) if f64::is_finite(r) => r,
            _ => return Err(bad("the rating is not a finite number")),
        };
        let snippet = snippet.split_whitespace().collect::<Vec<_>>().join(" ");
        if snippet.is_empty() {
            return Err(bad("the text is empty"));
        }
        if rating != 0.0 {
            out.push((snippet, (rating > 0.0) as u32));
        }
    }
    if lines == 0 {
        return Err(Error::invalid(format!(
            "{}: no rated snippets",
            path.display()
        )));
    }
    Ok(out)
}

/// The documents of a sentence corpus at `path`: a directory of `.txt` documents ([`sotu`]),
/// a `.json` object of articles ([`wiki`]) or any other file as one sentence a line, each
/// line its own document (named by its text, so a repeated line stays on one side).
pub fn corpus(path: impl AsRef<Path>) -> Result<Vec<Document>> {
    let path = path.as_ref();
    if path.is_dir() {
        return sotu(path);
    }
    if path.extension().is_some_and(|x| x == "json") {
        return wiki(path);
    }
    let docs: Vec<Document> = read_text(path)?
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .map(|l| Document {
            name: l.clone(),
            sentences: vec![l],
        })
        .collect();
    if docs.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no sentences (one a line)",
            path.display()
        )));
    }
    Ok(docs)
}
