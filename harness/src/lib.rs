//! Stagehand's host library: everything a program over stage-2 targets needs on the host.
//! It knows no target: a program registers its own ([`targets::register`], or
//! [`cli::main`] with them). The shared `no_std` part (ops, the target seam, the executor,
//! every oracle, traces) is `harness-core`, re-exported as [`core`].
//!
//! | module | what |
//! |---|---|
//! | [`native`] | the simulated machine, the target registry, native runs, corpus checks |
//! | [`format`](mod@format) | the `.s2` format, expectations, inert ops, known findings, input files |
//! | [`fuzz`] | fuzz-target entry points and macros, the op-level mutator, minimization, triage |
//! | [`hw`] | QEMU images, hardware-against-native comparison, disassembly |
//! | [`report`] | the CLI's human and JSON reports, and rendering |
//! | [`cli`] | the `stagehand` command line, as a library function |
//!
//! The submodules are also reachable from the root (`harness::text`, `harness::run`, …).

#![warn(missing_docs)]

pub mod cli;
pub mod format;
pub mod fuzz;
pub mod hw;
pub mod native;
pub mod report;

pub use format::{expect, files, inert, known, text};
pub use fuzz::{minimize, mutate, triage};
pub use harness_core as core;
pub use hw::{disasm, hwdiff, qemu};
pub use native::{bare, check, elsewhere, run, sim, targets};
pub use report::render;

#[cfg(test)]
mod testing;
