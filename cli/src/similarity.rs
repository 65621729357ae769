//! `sparq embed --similarity`: the cosine similarity of every pair of inputs as an aligned
//! table, each row labelled with its input (shortened).

/// Characters of an input kept in its label.
const LABEL_CHARS: usize = 32;

/// `text` cut to [`LABEL_CHARS`] characters (an ellipsis marking a cut), on one line.
fn label(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one_line = one_line.trim();
    if one_line.chars().count() <= LABEL_CHARS {
        return one_line.to_string();
    }
    let mut cut: String = one_line.chars().take(LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The table of `matrix` (cosines of `inputs`, pairwise): a header of input numbers, then
/// one line per input, its number and label, then its cosines with three decimals.
pub fn table(inputs: &[String], matrix: &[Vec<f32>]) -> String {
    let labels: Vec<String> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {}", i + 1, label(t)))
        .collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    // "-1.000" is six characters; numbers of many inputs may be wider.
    let col = 6.max(inputs.len().to_string().len());
    let mut out = format!("{:width$}", "");
    for j in 0..inputs.len() {
        out += &format!("  {:>col$}", j + 1);
    }
    for (l, row) in labels.iter().zip(matrix) {
        let pad = width - l.chars().count();
        out += &format!("\n{l}{:pad$}", "");
        for c in row {
            out += &format!("  {c:>col$.3}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cut_with_an_ellipsis_and_kept_on_one_line() {
        assert_eq!(label("short\ttext\n"), "short text");
        let long = "é".repeat(40);
        let l = label(&long);
        assert_eq!(l.chars().count(), LABEL_CHARS);
        assert!(l.ends_with('…'));
    }

    #[test]
    fn columns_line_up_whatever_the_labels() {
        let inputs = vec!["a".to_string(), "a much longer sentence".to_string()];
        let t = table(&inputs, &[vec![1.0, -0.25], vec![-0.25, 1.0]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "{t}");
        assert!(lines[1].ends_with(" 1.000  -0.250"), "{t}");
        assert!(lines[2].starts_with("2 a much longer sentence"), "{t}");
    }
}
