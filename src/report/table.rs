//! A table of text cells rendered three ways: markdown padded so that its columns line up in
//! a terminal and still paste as valid markdown, CSV (RFC 4180) and JSON rows.

use serde_json::{Map, Value};

/// How a column's cells sit in their width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text: against the left edge.
    Left,
    /// Numbers: against the right edge (markdown `---:`).
    Right,
}

/// Headers, one alignment per column, and rows of cells.
#[derive(Clone, Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table of these columns and no rows.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Table {
            headers: columns.iter().map(|c| c.0.to_string()).collect(),
            align: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are empty and cells past the last column are dropped,
    /// so every rendering stays rectangular.
    pub fn push<S: Into<String>>(&mut self, row: impl IntoIterator<Item = S>) {
        let mut cells: Vec<String> = row.into_iter().map(Into::into).collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The headers.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The rows of cells.
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    /// A table of JSON objects (each row's keys, in the order they first appear, become the
    /// columns): strings as they are, numbers and booleans as JSON writes them, `null` empty,
    /// arrays and objects as compact JSON. Columns of numbers align right.
    pub fn from_json_rows(rows: &[Value]) -> Self {
        let mut headers: Vec<String> = Vec::new();
        for r in rows {
            if let Value::Object(m) = r {
                for k in m.keys() {
                    if !headers.contains(k) {
                        headers.push(k.clone());
                    }
                }
            }
        }
        let align = headers
            .iter()
            .map(|h| {
                let numeric = rows
                    .iter()
                    .all(|r| matches!(r.get(h), Some(Value::Number(_)) | None | Some(Value::Null)));
                if numeric { Align::Right } else { Align::Left }
            })
            .collect();
        let mut t = Table {
            headers,
            align,
            rows: Vec::new(),
        };
        for r in rows {
            let cells: Vec<String> = t
                .headers
                .iter()
                .map(|h| match r.get(h) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                })
                .collect();
            t.rows.push(cells);
        }
        t
    }

    /// Markdown with every column padded to its widest cell (`|` in a cell escaped as `\|`).
    pub fn markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let header: Vec<String> = self.headers.iter().map(|h| esc(h)).collect();
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| esc(c)).collect())
            .collect();
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| width(&r[i]))
                    .chain([width(&header[i]), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for ((c, &w), &a) in cells.iter().zip(&widths).zip(&self.align) {
                let pad = " ".repeat(w - width(c));
                match a {
                    Align::Left => s += &format!(" {c}{pad} |"),
                    Align::Right => s += &format!(" {pad}{c} |"),
                }
            }
            s + "\n"
        };
        let mut out = line(&header);
        out.push('|');
        for (&w, &a) in widths.iter().zip(&self.align) {
            match a {
                Align::Left => out += &format!(" {} |", "-".repeat(w)),
                Align::Right => out += &format!(" {}: |", "-".repeat(w - 1)),
            }
        }
        out.push('\n');
        for r in &rows {
            out += &line(r);
        }
        out
    }

    /// CSV after RFC 4180: a header line, CRLF line ends, a field with a comma, a quote or a
    /// line break quoted with its quotes doubled.
    pub fn csv(&self) -> String {
        fn field(s: &str) -> String {
            if s.contains([',', '"', '\r', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let cells: Vec<String> = r.iter().map(|c| field(c)).collect();
            out += &cells.join(",");
            out += "\r\n";
        }
        out
    }

    /// One JSON object per row, header to cell text.
    pub fn json_rows(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    let m: Map<String, Value> = self
                        .headers
                        .iter()
                        .zip(r)
                        .map(|(h, c)| (h.clone(), Value::String(c.clone())))
                        .collect();
                    Value::Object(m)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&[("format", Align::Left), ("GB/s", Align::Right)]);
        t.push(["int4g32", "812 MB/s"]);
        t.push(["a|b", "4.23 TB/s"]);
        t
    }

    #[test]
    fn markdown_is_padded_and_escaped() {
        let md = sample().markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| format  |      GB/s |");
        assert_eq!(lines[1], "| ------- | --------: |");
        assert_eq!(lines[2], "| int4g32 |  812 MB/s |");
        assert_eq!(lines[3], "| a\\|b    | 4.23 TB/s |");
        // Every line as wide as the header, counted in characters (µ, ×, ± are one each).
        let mut t = Table::new(&[("µs", Align::Right)]);
        t.push(["35.9 ± 1.2 µs"]);
        let md = t.markdown();
        let w: Vec<usize> = md.lines().map(|l| l.chars().count()).collect();
        assert!(w.iter().all(|&x| x == w[0]), "{md}");
    }

    #[test]
    fn short_and_long_rows_stay_rectangular() {
        let mut t = Table::new(&[("a", Align::Left), ("b", Align::Left)]);
        t.push(["1"]);
        t.push(["1", "2", "3"]);
        assert_eq!(t.rows()[0], ["1", ""]);
        assert_eq!(t.rows()[1], ["1", "2"]);
        assert_eq!(t.csv(), "a,b\r\n1,\r\n1,2\r\n");
    }

    #[test]
    fn csv_quotes_after_rfc_4180() {
        let mut t = Table::new(&[("name", Align::Left), ("note", Align::Left)]);
        t.push(["a,b", "say \"hi\""]);
        t.push(["two\nlines", "a|b"]);
        assert_eq!(
            t.csv(),
            "name,note\r\n\"a,b\",\"say \"\"hi\"\"\"\r\n\"two\nlines\",a|b\r\n"
        );
    }

    #[test]
    fn json_rows_and_back() {
        let rows = sample().json_rows();
        assert_eq!(rows[1]["format"], "a|b");
        assert_eq!(rows[0]["GB/s"], "812 MB/s");
        let raw = serde_json::json!([
            {"format": "f16", "us": 1.5, "torch": null, "by": [["a", 1]]},
            {"format": "int8", "us": 2, "extra": true}
        ]);
        let t = Table::from_json_rows(raw.as_array().unwrap());
        assert_eq!(t.headers(), ["format", "us", "torch", "by", "extra"]);
        assert_eq!(t.rows()[0], ["f16", "1.5", "", "[[\"a\",1]]", ""]);
        assert_eq!(t.rows()[1], ["int8", "2", "", "", "true"]);
        assert!(
            t.markdown()
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("| ------ | --: |")
        );
    }
}
