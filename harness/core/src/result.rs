//! What an op returned, and the sets of results the reference model allows.

use crate::arch::Vttbr;
use crate::machine::AccessOutcome;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Why an entry point of a target failed, in the harness's words. Adapters translate their
/// crate's errors into these; the reference model says which are allowed. The first ten are
/// the kernel's errno cases and caller mistakes of the KVM/ARM API.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Errno {
    /// `-ENOMEM`: a page allocation failed.
    NoMemory,
    /// `-EFAULT`: a live mapping is in the way.
    Fault,
    /// `-EINVAL`: the root table is already allocated.
    AlreadyInitialized,
    /// The VM has no root table.
    NoRoot,
    /// An address or range that must be page aligned is not.
    Misaligned,
    /// An address beyond the IPA or PA space, or a range that wraps.
    OutOfRange,
    /// A cache topup asked for more than the cache holds, or min > max.
    BadCacheRequest,
    /// No memslot with that id.
    UnknownMemslot,
    /// `-EEXIST`: the memslot overlaps another one, or the id is taken.
    MemslotOverlap,
    /// `-ENOSPC`: every memslot is in use.
    NoMemslotSpace,
    /// The target refused a change it could only make by breaking a live mapping
    /// (aarch64-paging's `BreakBeforeMakeViolation`).
    BbmRefused,
}

impl Errno {
    /// A short stable name, used in traces and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::NoMemory => "ENOMEM",
            Errno::Fault => "EFAULT",
            Errno::AlreadyInitialized => "EINVAL-initialized",
            Errno::NoRoot => "no-root",
            Errno::Misaligned => "misaligned",
            Errno::OutOfRange => "out-of-range",
            Errno::BadCacheRequest => "bad-cache-request",
            Errno::UnknownMemslot => "unknown-memslot",
            Errno::MemslotOverlap => "EEXIST",
            Errno::NoMemslotSpace => "ENOSPC",
            Errno::BbmRefused => "bbm-refused",
        }
    }
    /// Every error, in declaration order.
    pub const ALL: [Errno; 11] = [
        Errno::NoMemory,
        Errno::Fault,
        Errno::AlreadyInitialized,
        Errno::NoRoot,
        Errno::Misaligned,
        Errno::OutOfRange,
        Errno::BadCacheRequest,
        Errno::UnknownMemslot,
        Errno::MemslotOverlap,
        Errno::NoMemslotSpace,
        Errno::BbmRefused,
    ];
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the executor refused an op before it reached `mmu`. Decided by shared code, so the
/// simulator and the hardware refuse the same ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reject {
    /// The VM does not exist.
    NoVm,
    /// `create_vm` of a VM that exists.
    VmExists,
    /// The op would touch the guest stub's page or memslot range.
    ReservedIpa,
    /// A frame outside the guest (or, for `ioremap`, device) window.
    PaOutsideWindow,
    /// A guest access to an address that is not word aligned, beyond the IPA space, or
    /// beyond what the guest's stage 1 reaches.
    BadAccessAddress,
    /// The target does not offer this op.
    NotOffered,
}

/// The result of one op.
#[allow(missing_docs)] // variant docs name the fields
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// Success.
    Ok,
    /// The target returned an error.
    Err(Errno),
    /// The VTTBR after `update_vmid` or `enter`.
    Vttbr(Vttbr),
    /// A guest access; `fresh` is set when a model answered from a stale TLB entry or an
    /// uncleaned descriptor, and a walk of the tables as written would give something else.
    Access { outcome: AccessOutcome, fresh: Option<AccessOutcome> },
    /// The executor refused the op.
    Rejected(Reject),
    /// `mmu` panicked; the sequence ends here.
    Panic,
}

/// A set of allowed results: `Ok` and any subset of [`Errno`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResultSet(pub u16);

impl ResultSet {
    /// Only success.
    pub const OK: ResultSet = ResultSet(1);

    /// Only this error.
    pub const fn err(e: Errno) -> ResultSet {
        ResultSet(0).or_err(e)
    }
    /// This set plus the error `e`.
    pub const fn or_err(self, e: Errno) -> ResultSet {
        let mut i = 0;
        while i < Errno::ALL.len() {
            if Errno::ALL[i] as u8 == e as u8 {
                return ResultSet(self.0 | 1 << (i + 1));
            }
            i += 1;
        }
        self
    }
    /// True when `r` is allowed.
    pub fn allows(self, r: &OpResult) -> bool {
        match r {
            OpResult::Ok => self.0 & 1 != 0,
            OpResult::Err(e) => self == self.or_err(*e) && self.0 != 0,
            _ => false,
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reject::NoVm => "no-vm",
            Reject::VmExists => "vm-exists",
            Reject::ReservedIpa => "reserved-ipa",
            Reject::PaOutsideWindow => "pa-outside-window",
            Reject::BadAccessAddress => "bad-access-address",
            Reject::NotOffered => "not-offered",
        })
    }
}

impl fmt::Display for OpResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpResult::Ok => f.write_str("ok"),
            OpResult::Err(e) => write!(f, "error {e}"),
            OpResult::Vttbr(v) => write!(f, "vttbr {v}"),
            OpResult::Access { outcome, fresh: None } => write!(f, "{outcome}"),
            OpResult::Access { outcome, fresh: Some(fresh) } => {
                write!(f, "{outcome} (stale TLB or uncleaned descriptor; the tables as written give {fresh})")
            }
            OpResult::Rejected(r) => write!(f, "rejected: {r}"),
            OpResult::Panic => f.write_str("panic"),
        }
    }
}

impl fmt::Display for ResultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { " or " };
            first = false;
            f.write_str(s)
        };
        if self.0 & 1 != 0 {
            sep(f)?;
            f.write_str("ok")?;
        }
        for (i, e) in Errno::ALL.iter().enumerate() {
            if self.0 & 1 << (i + 1) != 0 {
                sep(f)?;
                write!(f, "error {e}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_sets() {
        let s = ResultSet::OK.or_err(Errno::NoMemory);
        assert!(s.allows(&OpResult::Ok));
        assert!(s.allows(&OpResult::Err(Errno::NoMemory)));
        assert!(!s.allows(&OpResult::Err(Errno::Fault)));
        assert!(!ResultSet::err(Errno::Fault).allows(&OpResult::Ok));
        assert!(!ResultSet::OK.allows(&OpResult::Panic));
    }
}
