//! Stagehand's shared core, compiled both into the host harness and into the ARM image: the
//! op model and byte codec, the platform layer over a [`machine::Machine`], the architectural
//! walker, the reference model and oracles, the executor, and traces.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod batch;
pub mod bytes;
pub mod codec;
pub mod event;
pub mod exec;
pub mod host;
pub mod layout;
pub mod machine;
pub mod model;
pub mod op;
pub mod result;
pub mod trace;
pub mod violation;
pub mod walker;

pub use event::Event;
pub use exec::Executor;
pub use layout::Layout;
pub use machine::{AccessKind, AccessOutcome, Machine};
pub use op::{Config, Expect, Op, Walker};
pub use result::{OpResult, Reject};
pub use trace::{Step, Trace};
pub use violation::{Detail, Kind, Violation};
