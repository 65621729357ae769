//! The layering rules of `docs/architecture.md`, checked on the source text so that a change
//! that breaks them fails here instead of slowly turning the crate into a knot:
//!
//! - no import cycle between modules (a module is a file, or a folder's `mod.rs`);
//! - every reference from one top-level module to another goes down the layer table below;
//! - host-side modules (weight formats, pruning, references) name no wgpu type;
//! - bind groups are created only in `src/gpu/`, and `SPARQ_*` variables are read only by the
//!   one configuration parser.
//!
//! References are found as `crate::a::b` and `super::...` paths (in `use` lines and in code),
//! resolved to the deepest module that exists; references between a module and its own
//! ancestors or descendants (re-exports, `super::Type`) are containment, not layering.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first; a module may refer to its own layer and below.
const LAYERS: &[&[&str]] = &[
    &["error", "files"],
    &[
        "config",
        "activation",
        "reference",
        "formats",
        "gguf",
        "prune",
        "report",
        "sparse",
        "weights",
    ],
    &["gpu"],
    &["tensor"],
    &["matmul"],
    &["linear"],
    &["graph"],
    &["model"],
    &["train"],
    &["schedule"],
    &["bench"],
];

/// Modules (or module prefixes) that run on the host only: no wgpu type may appear in them.
const HOST_ONLY: &[&str] = &[
    "error",
    "files",
    "config",
    "activation",
    "reference",
    "formats",
    "gguf",
    "prune",
    "report",
    "sparse::csr",
    "sparse::bsr",
    "sparse::two_four",
    "sparse::values",
    "sparse::validate",
    "sparse::weights",
    "weights",
    "model::llama::reference",
    "train::reference",
    "model::llama::weights",
    "model::sampling",
    "model::text",
];

/// Where a GPU-level sub-module sits when its top-level module is host-side.
const LAYER_OVERRIDES: &[(&str, &str)] = &[
    ("sparse::gpu", "matmul"),
    ("sparse::choose", "gpu"),
    ("model::ops", "matmul"),
];

struct Source {
    module: String,
    path: PathBuf,
    text: String,
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let test_only = test_only_files(&files);
    files
        .into_iter()
        .filter(|p| !test_only.contains(p))
        .map(|path| {
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                parts.clear();
            }
            let text = code_of(&std::fs::read_to_string(&path).unwrap());
            Source {
                module: parts.join("::"),
                path,
                text,
            }
        })
        .collect()
}

/// Files of modules declared under `#[cfg(test)]` (`#[cfg(test)] mod name;`): test code,
/// which may reach anywhere.
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            let Some(name) = pair[1]
                .strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(';'))
            else {
                continue;
            };
            if pair[0] != "#[cfg(test)]" {
                continue;
            }
            // `a/mod.rs`, `lib.rs` declare children beside them; `a.rs` declares them in `a/`.
            let stem = f.file_stem().unwrap();
            let dir = if stem == "mod" || stem == "lib" || stem == "main" {
                f.parent().unwrap().to_path_buf()
            } else {
                f.with_extension("")
            };
            out.insert(dir.join(format!("{name}.rs")));
            out.insert(dir.join(name).join("mod.rs"));
        }
    }
    out
}

/// The text without line comments and without a trailing `#[cfg(test)] mod tests`.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.trim_start() == "#[cfg(test)]" {
            // Unit tests may reach anywhere; they sit at the end of the file by convention.
            break;
        }
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Paths written as `crate::...` or `super::...` in `text`, as absolute module paths, with
/// the brace groups of `use` lines expanded one level.
fn referenced_paths(module: &str, text: &str) -> Vec<String> {
    let here: Vec<&str> = if module.is_empty() {
        vec![]
    } else {
        module.split("::").collect()
    };
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < text.len() {
        if !text.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &text[i..];
        let start_ok = i == 0 || !ident(bytes[i - 1]);
        let kw = ["crate::", "super::"]
            .into_iter()
            .find(|k| rest.starts_with(k));
        let (Some(kw), true) = (kw, start_ok) else {
            i += 1;
            continue;
        };
        let mut j = i + kw.len();
        // The path: identifiers joined by `::`, possibly ending in a `{...}` group.
        let mut segs: Vec<String> = Vec::new();
        let mut base: Vec<String> = if kw == "crate::" {
            vec![]
        } else {
            // `super` is the parent module, for a file module and a folder's `mod.rs` alike.
            here[..here.len().saturating_sub(1)]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        loop {
            let s = j;
            while j < text.len() && ident(bytes[j]) {
                j += 1;
            }
            if s == j {
                break;
            }
            let seg = &text[s..j];
            if seg == "super" && segs.is_empty() {
                base.pop();
            } else {
                segs.push(seg.to_string());
            }
            if text[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        let mut prefix = base;
        prefix.extend(segs);
        if text[j..].starts_with('{') {
            let end = text[j..].find('}').map_or(text.len(), |e| j + e);
            for item in text[j + 1..end].split(',') {
                let item = item.trim();
                let first: Vec<&str> = item
                    .split("::")
                    .map(|s| s.trim_matches(|c: char| !c.is_alphanumeric() && c != '_'))
                    .take_while(|s| !s.is_empty() && *s != "self")
                    .collect();
                let mut p = prefix.clone();
                p.extend(first.iter().map(|s| s.to_string()));
                out.push(p.join("::"));
            }
            j = end;
        } else {
            out.push(prefix.join("::"));
        }
        i = j.max(i + 1);
    }
    out
}

fn is_within(a: &str, b: &str) -> bool {
    b.is_empty() || a == b || a.starts_with(&format!("{b}::"))
}

/// Module → modules it refers to (neither its ancestors nor its descendants).
fn module_edges(srcs: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<&str> = srcs.iter().map(|s| s.module.as_str()).collect();
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|c| modules.contains(c.as_str()))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in srcs {
        for p in referenced_paths(&s.module, &s.text) {
            let Some(t) = resolve(&p) else { continue };
            if s.module.is_empty() || is_within(&s.module, &t) || is_within(&t, &s.module) {
                continue;
            }
            edges.entry(s.module.clone()).or_default().insert(t);
        }
    }
    edges
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.edges.get(v) {
            for w in ws {
                if !t.index.contains_key(w.as_str()) {
                    visit(t, w);
                    let l = t.low[w.as_str()].min(t.low[v]);
                    t.low.insert(v, l);
                } else if t.on.contains(w.as_str()) {
                    let l = t.index[w.as_str()].min(t.low[v]);
                    t.low.insert(v, l);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.as_str()).chain(bs.iter().map(String::as_str)))
        .collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn layer_of(module: &str) -> Option<usize> {
    let top = LAYER_OVERRIDES
        .iter()
        .find(|(m, _)| is_within(module, m))
        .map_or_else(|| module.split("::").next().unwrap(), |(_, l)| *l);
    LAYERS.iter().position(|l| l.contains(&top))
}

#[test]
fn module_references_resolve_and_include_known_edges() {
    // A check of the checker: edges that exist today must be found.
    let edges = module_edges(&sources());
    assert!(
        edges["model::bench"].contains("gpu"),
        "{:?}",
        edges["model::bench"]
    );
    assert!(edges.values().map(BTreeSet::len).sum::<usize>() > 50);
    let paths = referenced_paths("a::b", "use super::{c, d::e};\nlet x = crate::f::g(1);");
    assert_eq!(paths, ["a::c", "a::d::e", "f::g"]);
}

#[test]
fn no_import_cycles_between_modules() {
    let found = cycles(&module_edges(&sources()));
    assert!(
        found.is_empty(),
        "modules that import each other: {found:?}"
    );
    // Cycles through whole top-level modules (matmul → sparse → matmul) count as well.
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, bs) in module_edges(&sources()) {
        for b in bs {
            let (ta, tb) = (a.split("::").next().unwrap(), b.split("::").next().unwrap());
            if ta != tb {
                top.entry(ta.to_string())
                    .or_default()
                    .insert(tb.to_string());
            }
        }
    }
    let found = cycles(&top);
    assert!(found.is_empty(), "top-level modules in a cycle: {found:?}");
}

#[test]
fn references_go_down_the_layers() {
    let mut wrong = Vec::new();
    for (a, bs) in module_edges(&sources()) {
        let Some(la) = layer_of(&a) else {
            wrong.push(format!("{a} is in no layer (add it to LAYERS)"));
            continue;
        };
        for b in bs {
            match layer_of(&b) {
                Some(lb) if lb <= la => {}
                Some(_) => wrong.push(format!("{a} → {b}")),
                None => wrong.push(format!("{b} is in no layer (add it to LAYERS)")),
            }
        }
    }
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "references up the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn host_modules_name_no_wgpu_type() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| HOST_ONLY.iter().any(|h| is_within(&s.module, h)))
        .filter(|s| s.text.contains("wgpu::") || s.text.contains("crate::gpu"))
        .map(|s| s.path.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "host-side modules using wgpu: {offenders:?}"
    );
}

#[test]
fn bind_groups_and_environment_each_have_one_place() {
    let mut wrong = Vec::new();
    for s in sources() {
        if s.text.contains("create_bind_group(") && !is_within(&s.module, "gpu") {
            wrong.push(format!("{}: creates a bind group", s.path.display()));
        }
        // The configuration parser, and adapter selection (`SPARQ_ADAPTER`, `WGPU_BACKEND`).
        let reads_env = s.text.contains("env::var(") || s.text.contains("env::var_os(");
        if reads_env && !["config", "gpu::adapter"].contains(&s.module.as_str()) {
            wrong.push(format!("{}: reads the environment", s.path.display()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn checkers_catch_what_they_look_for() {
    // A planted cycle and an upward reference must be found, or the tests above prove nothing.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges.entry(a.into()).or_default().insert(b.into());
    }
    assert_eq!(cycles(&edges), [vec!["a", "b", "c"]]);
    assert!(layer_of("gpu::kernel") < layer_of("model::bert"));
    assert_eq!(layer_of("sparse::gpu::xt"), layer_of("matmul"));
    assert!(layer_of("sparse::csr") < layer_of("gpu"));
    assert_eq!(layer_of("nowhere"), None);
}
