//! Records the git commit the crate is built from as `SPARQ_GIT_COMMIT` (the `commit` of
//! every machine-readable output, `sparq::report::COMMIT`): `unknown` outside a git checkout
//! or without git, never a build failure.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Rebuilt when HEAD moves: HEAD itself (a worktree's lives in its own git dir), the branch
    // it points at, and packed-refs where a branch can live instead. Only existing files are
    // named: a missing one would make cargo rerun this on every build.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(r);
    }
    for name in watched {
        if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && std::path::Path::new(&p).is_file()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rustc-env=SPARQ_GIT_COMMIT={commit}");
}
