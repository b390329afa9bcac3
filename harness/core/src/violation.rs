//! Typed violations: what an oracle found, at which op, with the details to act on.

use crate::machine::{AccessOutcome, Fault};
use crate::result::{OpResult, ResultSet};
use alloc::string::String;
use core::fmt;
use mmu::{Descriptor, Ipa, Pa, S2Attrs, Vmid, Warning};
use serde::{Deserialize, Serialize};

macro_rules! kinds {
    ($( $variant:ident = $name:literal, $oracle:literal, $title:literal; )*) => {
        /// The class of a violation; the name is what `.s2` headers and reports use.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Kind { $( #[doc = $title] $variant, )* }

        impl Kind {
            /// Every kind, in report order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];
            /// Stable name.
            pub const fn name(self) -> &'static str {
                match self { $(Kind::$variant => $name,)* }
            }
            /// Which of the oracles raises it.
            pub const fn oracle(self) -> &'static str {
                match self { $(Kind::$variant => $oracle,)* }
            }
            /// One-line title.
            pub const fn title(self) -> &'static str {
                match self { $(Kind::$variant => $title,)* }
            }
        }
    };
}

kinds! {
    WrongResult = "wrong-result", "reference model", "an op returned what the reference model does not allow";
    ModelMismatch = "model-mismatch", "reference model", "the tables translate an IPA differently from the reference model";
    AccessMismatch = "access-mismatch", "reference model", "a guest access returned what the reference model does not predict";
    Refcount = "refcount", "structure", "a table page's reference count is not 1 + its valid entries";
    TableAliased = "table-aliased", "structure", "a table page is linked from two entries";
    UseAfterFree = "use-after-free", "structure", "a freed page was read, written, refcounted or linked";
    BadFree = "bad-free", "structure", "a page was freed that was not allocated or is still in use";
    Leak = "leak", "structure", "pages of a destroyed VM were never freed";
    Malformed = "malformed", "structure", "a descriptor is malformed";
    MissingTlbi = "missing-tlbi", "TLB protocol", "missing TLB invalidation";
    FreedBeforeTlbi = "freed-before-tlbi", "TLB protocol", "a table page was freed before the TLB invalidation that covers it";
    Bbm = "bbm", "TLB protocol", "a valid entry changed its output address without break-before-make";
    VmidShared = "vmid-shared", "VMID", "two live VMs run with the same VMID in one generation";
    VmidStale = "vmid-stale", "VMID", "a VM runs with a VMID it lost to a rollover (or without one)";
    VmidReuse = "vmid-reuse", "VMID", "a VMID was handed out again without a rollover";
    DcacheNotCleaned = "dcache-not-cleaned", "cache protocol", "a descriptor write was not cleaned to the PoC before the walker could see it";
    Bug = "bug", "panics and warnings", "the MMU code panicked (BUG_ON)";
    Warn = "warn", "panics and warnings", "the MMU code raised a WARN_ON";
}

impl Kind {
    /// Looks a kind up by name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a stage-2 walk found for an IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Found {
    /// A leaf descriptor.
    Leaf(Descriptor),
    /// A fault.
    Fault(Fault),
}

/// An entry of the reference model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// The frame.
    pub pa: Pa,
    /// Type, permissions, execute-never.
    pub attrs: S2Attrs,
}

/// How a free went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreeProblem {
    /// The page was not allocated (double free, or never allocated).
    NotAllocated,
    /// The page is a table still linked into a live VM's tables.
    StillLinked,
    /// The page belongs to the root of a live VM.
    LiveRoot,
    /// Freed with a different order than it was allocated with.
    WrongOrder,
}

/// How a descriptor is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Malformation {
    /// A block descriptor (this configuration maps pages only).
    Block,
    /// Reserved bits set, or the reserved 0b01 encoding at level 3.
    Reserved,
    /// A MemAttr encoding the hypervisor never uses.
    MemAttr,
    /// Access flag clear on a new leaf.
    NoAccessFlag,
    /// A table descriptor pointing outside the table pool.
    TableOutsidePool,
    /// A newly linked table that already holds valid entries.
    TableNotEmpty,
    /// A descriptor written into a page that is not a linked table.
    NotATable,
}

/// What was done to a freed page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Use {
    /// A descriptor read.
    Read,
    /// A descriptor write.
    Write,
    /// get_page / put_page / page_count.
    Refcount,
    /// Linked as a table by a descriptor.
    Link,
    /// An address outside the table pool, where no table can live.
    Stray,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Index of the op during which it was found.
    pub op: u32,
    /// What was found.
    pub detail: Detail,
}

/// The details of a finding, one variant per [`Kind`].
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Detail {
    WrongResult { expected: ResultSet, got: OpResult },
    ModelMismatch { vm: u8, ipa: Ipa, expected: Option<Mapping>, found: Found },
    AccessMismatch { vm: u8, ipa: Ipa, expected: AccessOutcome, got: AccessOutcome },
    Refcount { page: Pa, count: u32, expected: u32 },
    TableAliased { table: Pa, first: Pa, second: Pa },
    UseAfterFree { page: Pa, what: Use },
    BadFree { page: Pa, problem: FreeProblem },
    Leak { vm: u8, pages: u32, first: Pa },
    Malformed { at: Pa, level: u8, desc: Descriptor, problem: Malformation },
    MissingTlbi { vm: u8, vmid: Vmid, changed_at: u32, ipa: Ipa, old: Descriptor },
    FreedBeforeTlbi { table: Pa, unlinked_at: u32, ipa: Ipa },
    Bbm { at: Pa, ipa: Ipa, old: Descriptor, new: Descriptor },
    VmidShared { vm: u8, other: u8, vmid: Vmid },
    VmidStale { vm: u8, vmid: Vmid, assigned_in: u32, rollovers: u32 },
    VmidReuse { vm: u8, other: u8, vmid: Vmid },
    DcacheNotCleaned { vm: u8, line: Pa, written_at: u32 },
    Bug { message: String },
    Warn { warning: Warning },
}

impl Detail {
    /// The kind of this finding.
    pub const fn kind(&self) -> Kind {
        match self {
            Detail::WrongResult { .. } => Kind::WrongResult,
            Detail::ModelMismatch { .. } => Kind::ModelMismatch,
            Detail::AccessMismatch { .. } => Kind::AccessMismatch,
            Detail::Refcount { .. } => Kind::Refcount,
            Detail::TableAliased { .. } => Kind::TableAliased,
            Detail::UseAfterFree { .. } => Kind::UseAfterFree,
            Detail::BadFree { .. } => Kind::BadFree,
            Detail::Leak { .. } => Kind::Leak,
            Detail::Malformed { .. } => Kind::Malformed,
            Detail::MissingTlbi { .. } => Kind::MissingTlbi,
            Detail::FreedBeforeTlbi { .. } => Kind::FreedBeforeTlbi,
            Detail::Bbm { .. } => Kind::Bbm,
            Detail::VmidShared { .. } => Kind::VmidShared,
            Detail::VmidStale { .. } => Kind::VmidStale,
            Detail::VmidReuse { .. } => Kind::VmidReuse,
            Detail::DcacheNotCleaned { .. } => Kind::DcacheNotCleaned,
            Detail::Bug { .. } => Kind::Bug,
            Detail::Warn { .. } => Kind::Warn,
        }
    }
}

impl Violation {
    /// The kind of this finding.
    pub const fn kind(&self) -> Kind {
        self.detail.kind()
    }
}

fn mapping(m: &Option<Mapping>) -> impl fmt::Display + '_ {
    struct M<'a>(&'a Option<Mapping>);
    impl fmt::Display for M<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                None => f.write_str("unmapped"),
                Some(m) => write!(f, "{}", Descriptor::page(m.pa, m.attrs)),
            }
        }
    }
    M(m)
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Leaf(d) => write!(f, "{d}"),
            Found::Fault(fault) => write!(f, "{fault}"),
        }
    }
}

impl fmt::Display for Detail {
    /// The details line of a report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::WrongResult { expected, got } => write!(f, "returned {got}, expected {expected}"),
            Detail::ModelMismatch { vm, ipa, expected, found } => {
                write!(f, "vm {vm} ipa {ipa}: tables give {found}, model says {}", mapping(expected))
            }
            Detail::AccessMismatch { vm, ipa, expected, got } => {
                write!(f, "vm {vm} ipa {ipa}: guest saw {got}, model predicts {expected}")
            }
            Detail::Refcount { page, count, expected } => {
                write!(f, "table page {page} has count {count}, expected {expected} (1 + valid entries)")
            }
            Detail::TableAliased { table, first, second } => {
                write!(f, "table {table} linked from entry {first} and again from {second}")
            }
            Detail::UseAfterFree { page, what } => write!(f, "{what:?} of freed page {page}"),
            Detail::BadFree { page, problem } => write!(f, "free of {page}: {problem:?}"),
            Detail::Leak { vm, pages, first } => write!(f, "vm {vm} destroyed, {pages} page(s) still allocated (first {first})"),
            Detail::Malformed { at, level, desc, problem } => {
                write!(f, "level-{level} entry at {at} = {:#018x}: {problem:?}", desc.0)
            }
            Detail::MissingTlbi { vm, vmid, changed_at, ipa, old } => write!(
                f,
                "vm {vm} (VMID {vmid}) runs while the change of ipa {ipa} at op {changed_at} (was {old}) is not invalidated"
            ),
            Detail::FreedBeforeTlbi { table, unlinked_at, ipa } => write!(
                f,
                "table {table} (ipa {ipa}) freed while its unlinking at op {unlinked_at} is not yet invalidated"
            ),
            Detail::Bbm { at, ipa, old, new } => {
                write!(f, "entry {at} for ipa {ipa} changed {old} -> {new} without an invalid entry and TLB invalidation between")
            }
            Detail::VmidShared { vm, other, vmid } => write!(f, "vm {vm} runs with VMID {vmid}, held by live vm {other} in this generation"),
            Detail::VmidStale { vm, vmid, assigned_in, rollovers } => write!(
                f,
                "vm {vm} runs with VMID {vmid} assigned in generation {assigned_in}, after {rollovers} rollover(s)"
            ),
            Detail::VmidReuse { vm, other, vmid } => {
                write!(f, "vm {vm} got VMID {vmid}, still held by vm {other} in this generation (no rollover flush)")
            }
            Detail::DcacheNotCleaned { vm, line, written_at } => write!(
                f,
                "vm {vm} runs while the line at {line} (written at op {written_at}) is not cleaned to the PoC"
            ),
            Detail::Bug { message } => f.write_str(message),
            Detail::Warn { warning } => write!(f, "WARN_ON: {warning:?}"),
        }
    }
}
