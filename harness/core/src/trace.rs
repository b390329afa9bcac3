//! Traces: the versioned record of a run. The binary form is what the recorder writes and the
//! ARM image streams; both sides produce the same bytes for the same run.

use crate::event::Event;
use crate::op::{Config, Op};
use crate::result::OpResult;
use crate::violation::Violation;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Magic bytes at the start of a binary trace.
pub const MAGIC: &[u8; 8] = b"S2TRACE\0";
/// Version of the trace format. Bump when any serialized type changes.
/// 2: the body is [`crate::codec`] inside deflate (1 was plain postcard).
pub const VERSION: u32 = 2;

/// The most a trace body may inflate to: a corrupted or hostile file cannot exhaust memory.
pub const MAX_BODY: usize = 256 << 20;

/// One op of a run and everything it caused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The op.
    pub op: Op,
    /// What it returned.
    pub result: OpResult,
    /// Platform events, in order.
    pub events: Vec<Event>,
    /// Violations found during it.
    pub violations: Vec<Violation>,
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The configuration it ran under.
    pub config: Config,
    /// One step per op.
    pub steps: Vec<Step>,
}

/// Why bytes are not a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceError {
    /// The magic bytes are missing.
    NotATrace,
    /// A trace of another format version.
    Version(u32),
    /// The body does not decode (truncated or corrupted).
    Corrupt,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::NotATrace => write!(f, "not a stagehand trace (bad magic)"),
            TraceError::Version(v) => {
                write!(f, "trace format version {v}, this build reads version {VERSION}")
            }
            TraceError::Corrupt => write!(f, "trace is truncated or corrupted"),
        }
    }
}

impl Trace {
    /// A trace of `steps` under `config`.
    pub fn new(config: Config, steps: Vec<Step>) -> Self {
        Trace { config, steps }
    }

    /// The binary form: magic, version (u32 LE), then the compact body, deflated.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = crate::codec::encode(self);
        let mut out = Vec::with_capacity(16 + body.len() / 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend(miniz_oxide::deflate::compress_to_vec(&body, 9));
        out
    }

    /// Reads the binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Trace, TraceError> {
        let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or(TraceError::NotATrace)?;
        let (version, body) = body.split_first_chunk::<4>().ok_or(TraceError::Corrupt)?;
        let version = u32::from_le_bytes(*version);
        if version != VERSION {
            return Err(TraceError::Version(version));
        }
        let body = miniz_oxide::inflate::decompress_to_vec_with_limit(body, MAX_BODY)
            .map_err(|_| TraceError::Corrupt)?;
        crate::codec::decode(&body).map_err(|_| TraceError::Corrupt)
    }

    /// Every violation, in order.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.steps.iter().flat_map(|s| s.violations.iter())
    }
}

/// Where two traces first differ.
#[allow(missing_docs)] // variant docs name the fields
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Divergence {
    /// The configurations differ.
    Config,
    /// Step `step` ran a different op.
    Op { step: usize },
    /// Step `step` returned something else.
    Result { step: usize },
    /// Event `event` of step `step` differs (or exists on one side only).
    Event { step: usize, event: usize },
    /// The violations of step `step` differ.
    Violations { step: usize },
    /// One trace has more steps; the other ends at `step`.
    Length { step: usize },
}

/// The first point where `a` and `b` differ, if any.
pub fn first_divergence(a: &Trace, b: &Trace) -> Option<Divergence> {
    if a.config != b.config {
        return Some(Divergence::Config);
    }
    for (i, (x, y)) in a.steps.iter().zip(&b.steps).enumerate() {
        if x.op != y.op {
            return Some(Divergence::Op { step: i });
        }
        if let Some(e) = (0..x.events.len().max(y.events.len())).find(|&e| x.events.get(e) != y.events.get(e))
        {
            return Some(Divergence::Event { step: i, event: e });
        }
        if x.result != y.result {
            return Some(Divergence::Result { step: i });
        }
        if x.violations != y.violations {
            return Some(Divergence::Violations { step: i });
        }
    }
    (a.steps.len() != b.steps.len()).then_some(Divergence::Length { step: a.steps.len().min(b.steps.len()) })
}
