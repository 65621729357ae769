//! An OpenAI-compatible HTTP server over sparq's schedulers (issue 15; in progress).

pub mod loadgen;
