//! Stagehand's shared core, compiled into the host harness and into the ARM images: the
//! harness's own architecture layer, the op model and byte codec, the target seam, the
//! platform layer over a [`machine::Machine`], the oracles, the executor, and traces.
//!
//! This crate does not depend on any code under test: targets plug in through
//! [`target::Target`] from their own crates under `targets/`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod arch;
pub mod batch;
pub mod bytes;
pub mod codec;
pub mod event;
pub mod exec;
pub mod feedback;
pub mod host;
pub mod layout;
pub mod machine;
pub mod op;
pub mod oracle;
pub mod pool;
pub mod result;
pub mod target;
pub mod trace;
pub mod violation;

pub use event::Event;
pub use exec::Executor;
pub use layout::Layout;
pub use machine::{AccessKind, AccessOutcome, Machine};
pub use op::{Config, Guest, Op, Walker};
pub use result::{Errno, OpResult, Reject};
pub use trace::{Step, Trace};
pub use violation::{Detail, Kind, Violation};
