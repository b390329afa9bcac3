//! Traces: the versioned record of a run. The binary form is what the recorder writes and the
//! ARM image streams; both sides produce the same bytes for the same run.

use crate::event::Event;
use crate::op::{Config, Op};
use crate::result::OpResult;
use crate::violation::Violation;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use miniz_oxide::deflate::core::{
    compress_to_output, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::inflate::core::inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;
use serde::{Deserialize, Serialize};

/// Magic bytes at the start of a binary trace.
pub const MAGIC: &[u8; 8] = b"S2TRACE\0";
/// Version of the trace format. Bump when any serialized type changes.
/// 6: the trace names its target (traces of 5 still load: [`V5_TARGETS`]);
/// 5: the guest's stage-1 mode in the configuration; 4: targets (the configuration names one), DSB events, TLBI scopes, harness-owned
/// descriptor and error types; 3: the deflate window is primed with [`DICTIONARY`] (2: plain
/// deflate; 1: postcard).
pub const VERSION: u32 = 6;

/// The targets of version-5 traces, which numbered them in the registry of the time: a
/// trace of 5 loads with the name of its number.
pub const V5_TARGETS: [&str; 2] = ["kvm-arm-2012", "aarch64-paging"];

/// The bytes that prime the deflate window: the codec body of a typical sequence
/// (`harness/core/dict/typical.s2`), so that a short trace pays only for what is new in it.
/// Part of the format: changing it means a new [`VERSION`].
pub const DICTIONARY: &[u8] = include_bytes!("../dict/trace.dict");

/// The dictionary of version 5 traces (still read).
const DICTIONARY_V5: &[u8] = include_bytes!("../dict/trace-v5.dict");

/// Deflate level: 6 compresses these bodies as well as 9, at half the time.
const LEVEL: i32 = 6;

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
    /// The configuration it ran under (its `target` is the index in the registry of the
    /// program that ran it; a program that loads the trace resolves [`Trace::target`]).
    pub config: Config,
    /// The name of the target.
    pub target: String,
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
    /// A trace of `steps` of target `target` under `config`.
    pub fn new(config: Config, target: &str, steps: Vec<Step>) -> Self {
        Trace { config, target: String::from(target), steps }
    }

    /// The binary form: magic, version (u32 LE), then the compact body as raw deflate,
    /// primed with [`DICTIONARY`] (see `primed`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = crate::codec::encode(self);
        let mut out = Vec::with_capacity(16 + body.len() / 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let mut compressor = primed();
        let (status, _) = compress_to_output(&mut compressor, &body, TDEFLFlush::Finish, |chunk| {
            out.extend_from_slice(chunk);
            true
        });
        debug_assert_eq!(status, TDEFLStatus::Done);
        out
    }

    /// Reads the binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Trace, TraceError> {
        let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or(TraceError::NotATrace)?;
        let (version, body) = body.split_first_chunk::<4>().ok_or(TraceError::Corrupt)?;
        let version = u32::from_le_bytes(*version);
        if version != VERSION && version != 5 {
            return Err(TraceError::Version(version));
        }
        let dictionary = if version == 5 { DICTIONARY_V5 } else { DICTIONARY };
        let body = inflate_primed(body, dictionary).ok_or(TraceError::Corrupt)?;
        let body = body.get(dictionary.len()..).ok_or(TraceError::Corrupt)?;
        crate::codec::decode(body, version == VERSION).map_err(|_| TraceError::Corrupt)
    }

    /// Every violation, in order.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.steps.iter().flat_map(|s| s.violations.iter())
    }
}

/// A compressor that has consumed [`DICTIONARY`] and flushed it (sync flush: byte-aligned,
/// the window kept). A trace stores only what the compressor emits after that flush; its
/// back-references may reach into the dictionary, which the reader puts in front of its
/// output buffer (raw deflate's form of a preset dictionary).
fn primed() -> CompressorOxide {
    let mut compressor = CompressorOxide::new(create_comp_flags_from_zip_params(LEVEL, -15, 0));
    compress_to_output(&mut compressor, DICTIONARY, TDEFLFlush::Sync, |_| true);
    compressor
}

/// Inflates a stream written by a compressor primed with `dictionary` ([`primed`]): the
/// output buffer starts with it, where the stream's back-references may reach. Returns the
/// dictionary followed by the body; `None` when the stream is corrupt, truncated or too large.
fn inflate_primed(mut input: &[u8], dictionary: &[u8]) -> Option<Vec<u8>> {
    let limit = dictionary.len() + MAX_BODY;
    let mut out = Vec::from(dictionary);
    out.resize((dictionary.len() + input.len().saturating_mul(4)).min(limit), 0);
    let mut state = alloc::boxed::Box::<DecompressorOxide>::default();
    let mut pos = dictionary.len();
    loop {
        let (status, read, written) =
            decompress(&mut state, input, &mut out, pos, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF);
        pos += written;
        input = input.get(read..)?;
        match status {
            TINFLStatus::Done => {
                out.truncate(pos);
                return Some(out);
            }
            TINFLStatus::HasMoreOutput if out.len() < limit => {
                out.resize(out.len().saturating_mul(2).min(limit), 0)
            }
            _ => return None,
        }
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
    if a.config != b.config || a.target != b.target {
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
