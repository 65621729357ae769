//! A tiny WGSL preprocessor for generated variants.
//!
//! naga emits every WGSL loop as `loop {}`, which driver compilers rarely unroll, and a local
//! array indexed inside a loop that is not unrolled lives in slow local memory. Kernels
//! therefore unroll their hot loops in the text:
//!
//! ```text
//! #unroll j BLOCK_VEC4      // repeat the lines up to the matching #end, j = 0, 1, ...
//!     let w{j} = decode(wv, {j}u);
//! #end
//! ```
//!
//! The count is an integer or the name of a variable passed to [`expand`]; `{{NAME}}` is
//! replaced by a variable's value anywhere. `#if NAME` ... `#end` keeps its lines when the
//! variable is non-zero, `#if !NAME` when it is zero; an `#else` line between them keeps the
//! lines after it in the other case. One variable per choice, tested both ways, means no
//! pair of flags that the Rust side must keep opposite. Blocks nest; an `#else` belongs to
//! the innermost `#if` and may appear once in it.

use crate::error::{Error, Result};

/// Expands `#unroll` and `#if` blocks and `{{NAME}}` substitutions in `src` using `vars`.
pub fn expand(src: &str, vars: &[(&str, i64)]) -> Result<String> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = String::with_capacity(src.len() * 2);
    let mut i = 0;
    match expand_block(&lines, &mut i, vars, &[], &mut out)? {
        Stop::Eof => {}
        Stop::End => return Err(Error::invalid(at(i, "#end without #if or #unroll"))),
        Stop::Else => return Err(Error::invalid(at(i, "#else without #if"))),
    }
    let mut text = out;
    for (name, value) in vars {
        text = text.replace(&format!("{{{{{name}}}}}"), &value.to_string());
    }
    if let Some(pos) = text.find("{{") {
        let end = text[pos..].find("}}").map_or(pos + 20, |e| pos + e + 2);
        return Err(Error::invalid(format!(
            "WGSL template variable {} has no value",
            &text[pos..end.min(text.len())]
        )));
    }
    Ok(text)
}

/// `msg` with the template line number `line` (1-based, as an editor shows it).
fn at(line: usize, msg: &str) -> String {
    format!("WGSL template line {line}: {msg}")
}

fn count_of(token: &str, vars: &[(&str, i64)]) -> Result<i64> {
    token
        .parse()
        .ok()
        .or_else(|| vars.iter().find(|(n, _)| *n == token).map(|(_, v)| *v))
        .ok_or_else(|| {
            Error::invalid(format!(
                "template count or flag '{token}' is neither a number nor a variable"
            ))
        })
}

/// The line that ended a block.
enum Stop {
    /// `#end`.
    End,
    /// `#else`.
    Else,
    /// The end of the text.
    Eof,
}

/// Expands lines from `*i` up to the next `#end` or `#else` at this level (or the end of the
/// text) and says which it was; the caller decides whether that stop is allowed there.
fn expand_block(
    lines: &[&str],
    i: &mut usize,
    vars: &[(&str, i64)],
    bound: &[(String, i64)],
    out: &mut String,
) -> Result<Stop> {
    while *i < lines.len() {
        let line = lines[*i];
        let t = line.trim_start();
        *i += 1;
        let opened = *i;
        if let Some(rest) = t.strip_prefix("#if ") {
            let rest = rest.trim();
            let (negate, name) = match rest.strip_prefix('!') {
                Some(name) => (true, name.trim()),
                None => (false, rest),
            };
            let on = (count_of(name, vars)? != 0) != negate;
            let mut sink = String::new();
            let first = expand_block(lines, i, vars, bound, if on { out } else { &mut sink })?;
            match first {
                Stop::End => {}
                Stop::Eof => return Err(Error::invalid(at(opened, "#if without #end"))),
                Stop::Else => {
                    let second =
                        expand_block(lines, i, vars, bound, if on { &mut sink } else { out })?;
                    match second {
                        Stop::End => {}
                        Stop::Else => {
                            return Err(Error::invalid(at(*i, "#else twice in one #if")));
                        }
                        Stop::Eof => return Err(Error::invalid(at(opened, "#if without #end"))),
                    }
                }
            }
        } else if let Some(rest) = t.strip_prefix("#unroll") {
            let mut parts = rest.split_whitespace();
            let (Some(var), Some(count)) = (parts.next(), parts.next()) else {
                return Err(Error::invalid(at(
                    opened,
                    &format!("bad #unroll line: {t}"),
                )));
            };
            let n = count_of(count, vars)?;
            let start = *i;
            // A zero count still walks the block once (into a sink) to find its end.
            for k in 0..n.max(1) {
                *i = start;
                let mut b = bound.to_vec();
                b.push((var.to_string(), k));
                let mut sink = String::new();
                let dst = if n > 0 { &mut *out } else { &mut sink };
                match expand_block(lines, i, vars, &b, dst)? {
                    Stop::End => {}
                    Stop::Else => {
                        return Err(Error::invalid(at(
                            *i,
                            "#else inside #unroll, outside an #if",
                        )));
                    }
                    Stop::Eof => return Err(Error::invalid(at(opened, "#unroll without #end"))),
                }
            }
        } else if t.starts_with("#end") {
            return Ok(Stop::End);
        } else if t.starts_with("#else") {
            return Ok(Stop::Else);
        } else {
            let mut l = line.to_string();
            for (name, v) in bound {
                l = l.replace(&format!("{{{name}}}"), &v.to_string());
            }
            out.push_str(&l);
            out.push('\n');
        }
    }
    Ok(Stop::Eof)
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn unrolls_nested_blocks_and_substitutes() {
        let src = "a {{X}}\n#unroll i 2\n#unroll j N\nv{i}{j}\n#end\n#end\nb";
        let out = expand(src, &[("X", 7), ("N", 3)]).unwrap();
        assert_eq!(out, "a 7\nv00\nv01\nv02\nv10\nv11\nv12\nb\n");
    }

    #[test]
    fn zero_count_emits_nothing_and_errors_are_reported() {
        assert_eq!(expand("#unroll i 0\nx\n#end\ny", &[]).unwrap(), "y\n");
        assert!(expand("#unroll i 2\nx", &[]).is_err());
        assert!(expand("#end", &[]).is_err());
        assert!(expand("{{MISSING}}", &[]).is_err());
        assert!(expand("#unroll i K\nx\n#end", &[]).is_err());
        assert_eq!(
            expand("#if A\na\n#end\n#if B\nb\n#end", &[("A", 1), ("B", 0)]).unwrap(),
            "a\n"
        );
    }

    #[test]
    fn else_and_negation_pick_one_side() {
        let src = "#if A\nyes\n#else\nno\n#end\n#if !A\nnot\n#end\nz";
        assert_eq!(expand(src, &[("A", 1)]).unwrap(), "yes\nz\n");
        assert_eq!(expand(src, &[("A", 0)]).unwrap(), "no\nnot\nz\n");
        // A negated test with an #else, and a non-zero value other than 1.
        let neg = "#if !A\nzero\n#else\nset\n#end";
        assert_eq!(expand(neg, &[("A", 0)]).unwrap(), "zero\n");
        assert_eq!(expand(neg, &[("A", 12)]).unwrap(), "set\n");
        assert_eq!(expand("#if ! A\nx\n#end", &[("A", 0)]).unwrap(), "x\n");
    }

    #[test]
    fn else_nests_inside_if_and_unroll() {
        // The inner #else belongs to the inner #if; the outer one to the outer #if.
        let src = "#if A\n#if B\nab\n#else\na\n#end\n#else\n#if B\nb\n#else\nnone\n#end\n#end";
        let run = |a, b| expand(src, &[("A", a), ("B", b)]).unwrap();
        assert_eq!(run(1, 1), "ab\n");
        assert_eq!(run(1, 0), "a\n");
        assert_eq!(run(0, 1), "b\n");
        assert_eq!(run(0, 0), "none\n");
        // An #if inside an #unroll, with the loop variable substituted on both sides.
        let unrolled = "#unroll i 2\n#if A\nx{i}\n#else\ny{i}\n#end\n#end";
        assert_eq!(expand(unrolled, &[("A", 0)]).unwrap(), "y0\ny1\n");
        // An #unroll inside the #else side, skipped or expanded.
        let inner = "#if A\nz\n#else\n#unroll j 2\nw{j}\n#end\n#end";
        assert_eq!(expand(inner, &[("A", 0)]).unwrap(), "w0\nw1\n");
        assert_eq!(expand(inner, &[("A", 1)]).unwrap(), "z\n");
    }

    #[test]
    fn misplaced_else_is_an_error() {
        let err = |src: &str| expand(src, &[("A", 1)]).unwrap_err().to_string();
        assert!(err("#if A\na\n#else\nb\n#else\nc\n#end").contains("#else twice"));
        assert!(err("a\n#else\nb").contains("#else without #if"));
        assert!(err("#unroll i 2\na\n#else\nb\n#end").contains("inside #unroll"));
        // Also when the #unroll count is zero and its body is skipped.
        assert!(expand("#unroll i 0\n#else\n#end", &[]).is_err());
        assert!(err("#if A\na\n#else\nb").contains("#if without #end"));
        assert!(err("#if A\na").contains("#if without #end"));
        assert!(err("#if !\na\n#end").contains("neither a number nor a variable"));
        assert!(err("#if !B\na\n#end").contains("'B'"));
        // An #else that closes an #unroll's inner #if is fine; one more after it is not.
        assert!(
            expand(
                "#unroll i 1\n#if A\na\n#else\nb\n#end\n#else\n#end",
                &[("A", 1)]
            )
            .is_err()
        );
    }
}
