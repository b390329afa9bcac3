//! Failures of the stage-2 entry points: the kernel's errno cases and caller mistakes.

use core::fmt;

/// Why an entry point failed. `BUG_ON` cases are panics, `WARN_ON` cases go to
/// [`crate::Platform::warn`]; everything here is a recoverable error.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Error {
    /// `-ENOMEM`: a page allocation failed.
    NoMemory,
    /// `-EFAULT`: `ioremap` found a live mapping in its range.
    Fault,
    /// `-EINVAL`: the root table is already allocated.
    AlreadyInitialized,
    /// The VM has no root table (never allocated, or freed).
    NoRoot,
    /// Caller mistake: an address or range that must be page aligned is not.
    Misaligned,
    /// Caller mistake: an IPA or PA beyond 40 bits, or a range that wraps.
    OutOfRange,
    /// Caller mistake: cache topup asked for more than the cache holds, or min > max.
    BadCacheRequest,
    /// Caller mistake: no memslot with that id.
    UnknownMemslot,
    /// `-EEXIST`: the memslot overlaps another one in guest physical space, or the id is taken.
    MemslotOverlap,
    /// `-ENOSPC`: every memslot is in use.
    NoMemslotSpace,
}

impl Error {
    /// A short stable name, used in traces and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Error::NoMemory => "ENOMEM",
            Error::Fault => "EFAULT",
            Error::AlreadyInitialized => "EINVAL-initialized",
            Error::NoRoot => "no-root",
            Error::Misaligned => "misaligned",
            Error::OutOfRange => "out-of-range",
            Error::BadCacheRequest => "bad-cache-request",
            Error::UnknownMemslot => "unknown-memslot",
            Error::MemslotOverlap => "EEXIST",
            Error::NoMemslotSpace => "ENOSPC",
        }
    }
    /// Every error, for decoders and tests.
    pub const ALL: [Error; 10] = [
        Error::NoMemory,
        Error::Fault,
        Error::AlreadyInitialized,
        Error::NoRoot,
        Error::Misaligned,
        Error::OutOfRange,
        Error::BadCacheRequest,
        Error::UnknownMemslot,
        Error::MemslotOverlap,
        Error::NoMemslotSpace,
    ];
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
