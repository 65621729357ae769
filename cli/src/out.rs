//! Standard output for every command: a closed pipe (`sparq embed ... | head -1`) is a normal
//! way to end a command, so it ends the process quietly with status 0; any other write error
//! is one `sparq: ...` line and status 1 (instead of `println!`'s panic).

use std::io::Write;

/// Writes `args` to standard output and flushes it (so that the error, if any, is seen here).
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("sparq: standard output: {e}");
        std::process::exit(1);
    }
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}

/// `println!` through [`write`].
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};
