//! Platform events: everything the target did to the machine, in order.

use crate::arch::desc::Shown;
use crate::arch::tlb::Tlbi;
use crate::arch::{Desc, Pa, Profile, Vttbr};
use core::fmt;
use serde::{Deserialize, Serialize};

/// A `WARN_ON` of the code under test: something is wrong but execution goes on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Warning {
    /// A table page about to be freed at teardown does not hold exactly its own reference.
    TableCountAtFree {
        /// The table page.
        table: Pa,
        /// Its reference count.
        count: u32,
    },
    /// The root page checked at teardown does not hold exactly its own reference.
    RootCountAtFree {
        /// The page whose count was checked.
        page: Pa,
        /// Its reference count.
        count: u32,
    },
}

/// One effect on the machine.
#[allow(missing_docs)] // variant docs name the fields
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Pages allocated (zeroed).
    Alloc { pa: Pa, order: u8 },
    /// An allocation failed: injected by `fail_alloc`, or the pool was exhausted.
    AllocFail { order: u8, injected: bool },
    /// Pages freed (and poisoned).
    Free { pa: Pa, order: u8 },
    /// `get_page`; `count` is the count afterwards.
    Get { pa: Pa, count: u32 },
    /// `put_page`; `count` is the count afterwards.
    Put { pa: Pa, count: u32 },
    /// A descriptor write (instrumented targets), or a change found by diffing table memory
    /// (memory-owning targets).
    Write { pa: Pa, old: Desc, new: Desc },
    /// A clean to the point of coherency, completed by a DSB.
    Clean { pa: Pa, len: u32 },
    /// A TLB invalidation.
    Tlbi(Tlbi),
    /// A `WARN_ON`.
    Warn { warning: Warning },
    /// A VM's VTTBR changed (new VMID).
    Vttbr { vm: u8, vttbr: Vttbr },
    /// A data synchronization barrier.
    Dsb,
}

impl Event {
    /// The event as a report line, descriptors read under `profile`.
    pub fn show(&self, profile: Profile) -> impl fmt::Display + '_ {
        struct S<'a>(&'a Event, Profile);
        impl fmt::Display for S<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let d = |desc: Desc| Shown { desc, profile: self.1 };
                match self.0 {
                    Event::Alloc { pa, order } => write!(f, "alloc {pa} order {order}"),
                    Event::AllocFail { order, injected } => write!(
                        f,
                        "alloc order {order} failed ({})",
                        if *injected { "injected" } else { "pool exhausted" }
                    ),
                    Event::Free { pa, order } => write!(f, "free {pa} order {order}"),
                    Event::Get { pa, count } => write!(f, "get {pa} -> {count}"),
                    Event::Put { pa, count } => write!(f, "put {pa} -> {count}"),
                    Event::Write { pa, old, new } => write!(f, "write {pa}: {} -> {}", d(*old), d(*new)),
                    Event::Clean { pa, len } => write!(f, "clean {pa} +{len:#x}"),
                    Event::Tlbi(t) => write!(f, "{t}"),
                    Event::Warn { warning } => write!(f, "WARN {warning:?}"),
                    Event::Vttbr { vm, vttbr } => {
                        write!(f, "vm {vm} vttbr {vttbr} (vmid {})", vttbr.vmid_field())
                    }
                    Event::Dsb => f.write_str("dsb"),
                }
            }
        }
        S(self, profile)
    }
}
