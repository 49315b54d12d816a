//! Sampling a process and all its descendants from `/proc`: IO (`procdir`) is separate from
//! parsing (`parse`, and claude-proc's stat parser), so fixture directories and property tests
//! exercise the same code; `model` is the data, `sampler` the walk.

mod model;
mod parse;
mod procdir;
mod sampler;

pub use model::{CpuLedger, Fields, ProcState, ProcessSample, Rates, Totals, TreeSample};
pub use parse::{context_switches, io_bytes};
pub use procdir::ProcRoot;
pub use sampler::{Sampler, TreeWatch};
