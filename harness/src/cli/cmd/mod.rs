//! The commands of the `stagehand` binary, grouped by what they work on; their reports
//! are in `crate::report`.

pub mod fuzz;
pub mod hw;
pub mod qemu;
pub mod seq;
