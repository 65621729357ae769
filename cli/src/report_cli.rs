//! What the result commands print and write (docs/output.md): `--output md|json|csv` for
//! standard output, as `llama-bench -o` does, and `--json PATH` for the envelope in a file
//! (`-` is standard output, as `--input -` reads standard input).

use crate::out::out;
use sparq::Result;
use sparq::report::Envelope;
use std::path::{Path, PathBuf};

/// What goes to standard output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Markdown tables, padded to line up in a terminal.
    #[default]
    Md,
    /// The JSON envelope (docs/output.md).
    Json,
    /// The rows as CSV (RFC 4180), raw values, one header line.
    Csv,
}

/// The output options every result command shares.
#[derive(clap::Args, Clone, Debug)]
pub struct OutputArgs {
    /// What goes to standard output: md (tables), json (the envelope of docs/output.md) or
    /// csv (the rows).
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub output: Format,
    /// Also write the JSON envelope to this file (`-`: to standard output, instead of the
    /// tables).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// Whether `path` names standard output.
fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

impl OutputArgs {
    /// Prints `env` as asked (`markdown` builds the tables, only when they are printed) and
    /// writes the envelope to `--json`'s file.
    pub fn emit(&self, env: &Envelope, markdown: impl FnOnce() -> String) -> Result<()> {
        let to_stdout = self.json.as_deref().is_some_and(is_stdout);
        match (self.output, to_stdout) {
            (Format::Json, _) | (_, true) => out!("{}", env.to_json()),
            (Format::Csv, false) => out!("{}", env.table().csv()),
            (Format::Md, false) => {
                let md = markdown();
                out!("{md}");
                if !md.ends_with('\n') {
                    out!("\n");
                }
            }
        }
        if let Some(path) = self.json.as_deref().filter(|p| !is_stdout(p)) {
            sparq::error::write_file(path, env.to_json())?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    }
}
