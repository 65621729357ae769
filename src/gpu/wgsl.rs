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
//! variable is non-zero. Blocks nest.

use crate::error::{Error, Result};

/// Expands `#unroll` blocks and `{{NAME}}` substitutions in `src` using `vars`.
pub fn expand(src: &str, vars: &[(&str, i64)]) -> Result<String> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = String::with_capacity(src.len() * 2);
    let mut i = 0;
    expand_block(&lines, &mut i, vars, &[], &mut out, false)?;
    let mut text = out;
    for (name, value) in vars {
        text = text.replace(&format!("{{{{{name}}}}}"), &value.to_string());
    }
    if let Some(pos) = text.find("{{") {
        let end = text[pos..].find("}}").map_or(pos + 20, |e| pos + e + 2);
        return Err(Error::Invalid(format!(
            "WGSL template variable {} has no value",
            &text[pos..end.min(text.len())]
        )));
    }
    Ok(text)
}

fn count_of(token: &str, vars: &[(&str, i64)]) -> Result<i64> {
    token
        .parse()
        .ok()
        .or_else(|| vars.iter().find(|(n, _)| *n == token).map(|(_, v)| *v))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "#unroll count '{token}' is neither a number nor a variable"
            ))
        })
}

/// Expands lines from `*i` up to the matching `#end` (or the end when `nested` is false).
fn expand_block(
    lines: &[&str],
    i: &mut usize,
    vars: &[(&str, i64)],
    bound: &[(String, i64)],
    out: &mut String,
    nested: bool,
) -> Result<()> {
    while *i < lines.len() {
        let line = lines[*i];
        let t = line.trim_start();
        *i += 1;
        if let Some(rest) = t.strip_prefix("#if ") {
            let on = count_of(rest.trim(), vars)? != 0;
            let mut sink = String::new();
            expand_block(
                lines,
                i,
                vars,
                bound,
                if on { out } else { &mut sink },
                true,
            )?;
        } else if let Some(rest) = t.strip_prefix("#unroll") {
            let mut parts = rest.split_whitespace();
            let (Some(var), Some(count)) = (parts.next(), parts.next()) else {
                return Err(Error::Invalid(format!("bad #unroll line: {t}")));
            };
            let n = count_of(count, vars)?;
            let start = *i;
            if n <= 0 {
                // Still consume the block to find its end.
                let mut sink = String::new();
                expand_block(lines, i, vars, bound, &mut sink, true)?;
            }
            for k in 0..n {
                *i = start;
                let mut b = bound.to_vec();
                b.push((var.to_string(), k));
                expand_block(lines, i, vars, &b, out, true)?;
            }
        } else if t.starts_with("#end") {
            if nested {
                return Ok(());
            }
            return Err(Error::Invalid("#end without #unroll".into()));
        } else {
            let mut l = line.to_string();
            for (name, v) in bound {
                l = l.replace(&format!("{{{name}}}"), &v.to_string());
            }
            out.push_str(&l);
            out.push('\n');
        }
    }
    if nested {
        return Err(Error::Invalid("#unroll without #end".into()));
    }
    Ok(())
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
}
