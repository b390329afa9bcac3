//! Typed violations: what an oracle found, at which op, with the details to act on.

use crate::arch::desc::Shown;
use crate::arch::walk::Fault;
use crate::arch::{Desc, Ipa, Pa, Profile, Prot, Vmid, Vttbr};
use crate::event::Warning;
use crate::machine::AccessOutcome;
use crate::result::{OpResult, ResultSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
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
    Leak = "leak", "structure", "pages stay allocated that nothing reaches (after a VM's destruction, or at the end of a sequence)";
    Malformed = "malformed", "structure", "a descriptor is malformed";
    MissingTlbi = "missing-tlbi", "TLB protocol", "missing TLB invalidation";
    FreedBeforeTlbi = "freed-before-tlbi", "TLB protocol", "a table page was freed before the TLB invalidation that covers it";
    Bbm = "bbm", "break-before-make protocol", "a valid entry was replaced by a different valid entry without the full break-before-make sequence";
    VmidShared = "vmid-shared", "VMID", "two live VMs run with the same VMID in one generation";
    VmidStale = "vmid-stale", "VMID", "a VM runs with a VMID it lost to a rollover (or without one)";
    VmidReuse = "vmid-reuse", "VMID", "a VMID was handed out again without a rollover";
    DcacheNotCleaned = "dcache-not-cleaned", "cache protocol", "a descriptor write was not cleaned to the PoC before the walker could see it";
    Bug = "bug", "panics and warnings", "the MMU code panicked (BUG_ON)";
    Warn = "warn", "panics and warnings", "the MMU code raised a WARN_ON";
    TlbiBeforeDsb = "tlbi-before-dsb", "TLB protocol", "a TLB invalidation was issued before a DSB made the descriptor change it covers visible to the walker";
    CombinedNotInvalidated = "combined-not-invalidated", "TLB protocol", "a change was invalidated in stage-2-only TLB entries but not in combined stage 1+2 entries";
    BadVttbr = "bad-vttbr", "VMID", "a VTTBR whose VMID does not fit the configured width, whose base is not the VM's root, or whose reserved bits are set";
    StateMismatch = "state-mismatch", "reference model", "the target's memslots, vCPU cache or VMID state differ from the reference model";
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
    /// A leaf descriptor and its level.
    Leaf(Desc, u8),
    /// A fault.
    Fault(Fault),
}

/// What the reference model says one page maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// The frame.
    pub pa: Pa,
    /// Memory type and permissions.
    pub prot: Prot,
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
    /// A block descriptor where the target maps pages only, or at a level without blocks.
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
    /// The contiguous hint, which no hypervisor here sets.
    Contiguous,
    /// Bits 63:59 set.
    UpperBits,
}

/// The step of break-before-make that a replacement skipped (Arm ARM D8.16.1: invalid
/// write, DSB, a TLBI covering the entry, DSB, new write).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BbmStep {
    /// Valid replaced by valid in one write: no break at all.
    NoBreak,
    /// Broken, then made again before any TLBI covered the entry.
    MakeBeforeTlbi,
    /// A TLBI came before the break, none after it.
    TlbiBeforeBreak,
    /// The TLBI was not completed by a DSB before the new write.
    NoDsbAfterTlbi,
    /// The TLBIs since the break left combined stage 1+2 entries (IPAS2E1IS without
    /// VMALLE1IS).
    ScopeMissesCombined,
    /// A memory-owning target changed valid to valid between two maintenance operations:
    /// whether it wrote an invalid entry in between cannot be seen.
    Unordered,
    /// The TLBIs since the break left stage-2-only entries (VMALLE1IS without IPAS2E1IS).
    ScopeMissesStage2,
}

/// What part of a target's state disagrees with the model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateProblem {
    /// The memslots: (id, gpa, pages, hva) as the target holds them.
    Memslots(Vec<(u16, u64, u64, u64)>),
    /// The number of pages in the vCPU cache.
    Cache {
        /// As the target holds it.
        target: u32,
        /// As the model predicts.
        model: u32,
    },
    /// A cache page that is not an allocated, unlinked page.
    CachePage(Pa),
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
    WrongResult {
        expected: ResultSet,
        got: OpResult,
    },
    ModelMismatch {
        vm: u8,
        ipa: Ipa,
        expected: Option<Mapping>,
        fault_level: Option<u8>,
        found: Found,
    },
    AccessMismatch {
        vm: u8,
        ipa: Ipa,
        expected: AccessOutcome,
        got: AccessOutcome,
    },
    Refcount {
        page: Pa,
        count: u32,
        expected: u32,
    },
    TableAliased {
        table: Pa,
        first: Pa,
        second: Pa,
    },
    UseAfterFree {
        page: Pa,
        what: Use,
    },
    BadFree {
        page: Pa,
        problem: FreeProblem,
    },
    Leak {
        vm: u8,
        pages: u32,
        first: Pa,
    },
    Malformed {
        at: Pa,
        level: u8,
        desc: Desc,
        problem: Malformation,
    },
    MissingTlbi {
        vm: u8,
        vmid: Vmid,
        changed_at: u32,
        ipa: Ipa,
        old: Desc,
    },
    FreedBeforeTlbi {
        table: Pa,
        unlinked_at: u32,
        ipa: Ipa,
    },
    Bbm {
        at: Pa,
        ipa: Ipa,
        old: Desc,
        new: Desc,
        missing: BbmStep,
    },
    VmidShared {
        vm: u8,
        other: u8,
        vmid: Vmid,
    },
    VmidStale {
        vm: u8,
        vmid: Vmid,
        assigned_in: u32,
        rollovers: u32,
    },
    VmidReuse {
        vm: u8,
        other: u8,
        vmid: Vmid,
    },
    DcacheNotCleaned {
        vm: u8,
        line: Pa,
        written_at: u32,
    },
    Bug {
        message: String,
    },
    Warn {
        warning: Warning,
    },
    TlbiBeforeDsb {
        vm: u8,
        changed_at: u32,
        ipa: Ipa,
    },
    CombinedNotInvalidated {
        vm: u8,
        vmid: Vmid,
        changed_at: u32,
        ipa: Ipa,
        old: Desc,
    },
    BadVttbr {
        vm: u8,
        vttbr: Vttbr,
        problem: VttbrProblem,
    },
    StateMismatch {
        vm: u8,
        problem: StateProblem,
    },
    /// A panic (kind [`Kind::Bug`]) during an op in which a page allocation failed: what a
    /// target whose API cannot report allocation failure does. Last, so that traces written
    /// before it keep their bytes and meaning.
    BugAfterAllocFailure {
        message: String,
    },
}

/// What is wrong with a VTTBR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VttbrProblem {
    /// The VMID needs more bits than configured.
    VmidTooWide(u8),
    /// BADDR is not the VM's root.
    WrongRoot(Pa),
    /// Reserved bits (or BADDR bits below the root's alignment) are set.
    Reserved(u64),
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
            Detail::Bug { .. } | Detail::BugAfterAllocFailure { .. } => Kind::Bug,
            Detail::Warn { .. } => Kind::Warn,
            Detail::TlbiBeforeDsb { .. } => Kind::TlbiBeforeDsb,
            Detail::CombinedNotInvalidated { .. } => Kind::CombinedNotInvalidated,
            Detail::BadVttbr { .. } => Kind::BadVttbr,
            Detail::StateMismatch { .. } => Kind::StateMismatch,
        }
    }
}

impl Violation {
    /// The kind of this finding.
    pub const fn kind(&self) -> Kind {
        self.detail.kind()
    }
}

impl Found {
    fn show(&self, profile: Profile) -> impl fmt::Display + '_ {
        struct S<'a>(&'a Found, Profile);
        impl fmt::Display for S<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    Found::Leaf(d, 3) => write!(f, "{}", Shown { desc: *d, profile: self.1 }),
                    Found::Leaf(d, level) => {
                        write!(f, "{} (level {level})", Shown { desc: *d, profile: self.1 })
                    }
                    Found::Fault(fault) => write!(f, "{fault}"),
                }
            }
        }
        S(self, profile)
    }
}

impl Detail {
    /// The details line of a report, with descriptors read under `profile`.
    pub fn show(&self, profile: Profile) -> impl fmt::Display + '_ {
        struct S<'a>(&'a Detail, Profile);
        impl fmt::Display for S<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write(f, self.1)
            }
        }
        S(self, profile)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, profile: Profile) -> fmt::Result {
        let d = |desc: &Desc| Shown { desc: *desc, profile };
        match self {
            Detail::WrongResult { expected, got } => write!(f, "returned {got}, expected {expected}"),
            Detail::ModelMismatch { vm, ipa, expected, fault_level, found } => {
                write!(f, "vm {vm} ipa {ipa}: tables give {}, model says ", found.show(profile))?;
                match expected {
                    None => match fault_level {
                        Some(l) => write!(f, "unmapped (a translation fault at level {l}: emptied tables are freed)"),
                        None => f.write_str("unmapped"),
                    },
                    Some(m) => {
                        write!(f, "{} {}", m.pa, m.prot)?;
                        if let Found::Leaf(desc, level) = found {
                            let oa = crate::arch::Pa(m.pa.0 & !(crate::arch::level_size(*level) - 1));
                            let diff = m.prot.pattern(profile, *level, oa).differences(*desc);
                            if !diff.is_empty() {
                                write!(f, " ({})", diff.join("; "))?;
                            }
                        }
                        Ok(())
                    }
                }
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
            Detail::Leak { vm, pages, first } => {
                write!(f, "vm {vm}: {pages} page(s) allocated and no longer reachable (first {first})")
            }
            Detail::Malformed { at, level, desc, problem } => {
                write!(f, "level-{level} entry at {at} = {:#018x}: {problem:?}", desc.0)
            }
            Detail::MissingTlbi { vm, vmid, changed_at, ipa, old } => write!(
                f,
                "vm {vm} (VMID {vmid}) runs while the change of ipa {ipa} at op {changed_at} (was {}) is not invalidated",
                d(old)
            ),
            Detail::FreedBeforeTlbi { table, unlinked_at, ipa } => write!(
                f,
                "table {table} (ipa {ipa}) freed while its unlinking at op {unlinked_at} is not yet invalidated"
            ),
            Detail::Bbm { at, ipa, old, new, missing } => {
                let step = match missing {
                    BbmStep::NoBreak => "no break: valid replaced by valid in one write",
                    BbmStep::MakeBeforeTlbi => "make before TLBI: the new entry was written before a TLBI covered the old one",
                    BbmStep::TlbiBeforeBreak => "TLBI before break: the only TLBI came before the invalid write",
                    BbmStep::NoDsbAfterTlbi => "no DSB after TLBI: the new entry was written before the invalidation completed",
                    BbmStep::ScopeMissesCombined => "TLBI scope does not cover combined entries: IPAS2E1IS without VMALLE1IS",
                    BbmStep::ScopeMissesStage2 => "TLBI scope does not cover stage-2-only entries: VMALLE1IS without IPAS2E1IS",
                    BbmStep::Unordered => "valid to valid between two maintenance operations (writes of a memory-owning target are not ordered within that window)",
                };
                write!(f, "entry {at} for ipa {ipa} changed {} -> {}: {step}", d(old), d(new))
            }
            Detail::VmidShared { vm, other, vmid } => write!(f, "vm {vm} runs with VMID {vmid}, held by live vm {other} in this generation"),
            Detail::VmidStale { vm, vmid, assigned_in, rollovers } => write!(
                f,
                "vm {vm} runs with VMID {vmid} assigned in generation {assigned_in}, after {rollovers} rollover(s)"
            ),
            Detail::VmidReuse { vm, other, vmid } => {
                write!(f, "vm {vm} got VMID {vmid}, already handed to vm {other} in this generation (no rollover since)")
            }
            Detail::DcacheNotCleaned { vm, line, written_at } => write!(
                f,
                "vm {vm} runs while the line at {line} (written at op {written_at}) is not cleaned to the PoC"
            ),
            Detail::Bug { message } | Detail::BugAfterAllocFailure { message } => f.write_str(message),
            Detail::Warn { warning } => write!(f, "WARN_ON: {warning:?}"),
            Detail::TlbiBeforeDsb { vm, changed_at, ipa } => write!(
                f,
                "vm {vm}: no DSB before TLBI: the change of ipa {ipa} at op {changed_at} was not made visible to the walker before the invalidation"
            ),
            Detail::CombinedNotInvalidated { vm, vmid, changed_at, ipa, old } => write!(
                f,
                "vm {vm} (VMID {vmid}) runs while combined stage 1+2 entries for ipa {ipa} (changed at op {changed_at}, was {}) were never invalidated: IPAS2E1IS alone leaves them",
                d(old)
            ),
            Detail::BadVttbr { vm, vttbr, problem } => match problem {
                VttbrProblem::VmidTooWide(bits) => {
                    write!(f, "vm {vm} VTTBR {vttbr}: VMID {} does not fit {bits} bits", vttbr.vmid_field())
                }
                VttbrProblem::WrongRoot(root) => write!(f, "vm {vm} VTTBR {vttbr}: BADDR is not its root {root}"),
                VttbrProblem::Reserved(bits) => write!(f, "vm {vm} VTTBR {vttbr}: reserved bits {bits:#x} set"),
            },
            Detail::StateMismatch { vm, problem } => match problem {
                StateProblem::Memslots(slots) => {
                    write!(f, "vm {vm}: the target's memslots (id, gpa, pages, hva) are {slots:x?}")
                }
                StateProblem::Cache { target, model } => {
                    write!(f, "vm {vm}: the vCPU cache holds {target} page(s), the model {model}")
                }
                StateProblem::CachePage(pa) => {
                    write!(f, "vm {vm}: cache page {pa} is not an allocated, unused page")
                }
            },
        }
    }
}
