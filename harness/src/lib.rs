//! Stagehand's host harness: the simulated machine, the `.s2` text format, native runs,
//! rendering, minimization and the `stagehand` CLI. The shared, `no_std` part lives in
//! `harness-core`.

pub mod check;
pub mod expect;
pub mod files;
pub mod inert;
pub mod known;
pub mod minimize;
pub mod mutate;
pub mod render;
pub mod report;
pub mod run;
pub mod sim;
pub mod targets;
pub mod text;

pub use harness_core as core;
pub mod bare;
pub mod cli;
pub mod disasm;
pub mod fuzz;
pub mod hwdiff;
pub mod qemu;
pub mod triage;

#[cfg(test)]
mod testing;
