//! The one progress bar of every long command: case i of n, elapsed, ETA and the current
//! case's label on a terminal; nothing at all when stderr is not one (piped, a file, CI).
//!
//! The library reports progress through a plain callback `FnMut(done, total, label)`
//! (`done` cases of `total` finished, `label` the one starting); [`Bar::update`] takes
//! exactly that, so a command passes `|d, t, l| bar.update(d, t, l)`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar for a job of `total` cases (0 when the library will say), `what` before it.
    pub fn new(what: &str, total: usize) -> Self {
        // At least 1: a bar of 0 cases would draw full before the library gives its total.
        let bar = ProgressBar::with_draw_target(Some(total.max(1) as u64), target());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {bar:30} {pos}/{len} [{elapsed_precise}, ETA {eta}] {wide_msg}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(what.to_string());
        Bar { bar }
    }

    /// A spinner with elapsed time for a job whose number of steps is not known.
    pub fn spinner(what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(None, target());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{elapsed_precise}] {wide_msg}")
                .expect("valid template"),
        );
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Bar { bar }
    }

    /// The library's callback: `done` of `total` cases finished, `label` running now.
    pub fn update(&self, done: usize, total: usize, label: &str) {
        self.bar.set_length(total.max(1) as u64);
        self.bar.set_position(done as u64);
        self.bar.set_message(label.to_string());
    }

    /// Removes the bar while the job still runs (its results are about to be printed).
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }

    /// Removes the bar (the results follow on stdout); dropping it does the same, so an
    /// error leaves no half-drawn bar above its message.
    pub fn finish(self) {}
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// stderr when it is a terminal, else nowhere: piped output stays free of escape codes.
fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}
