//! Platform events: everything `mmu` did to the machine, in order.

use core::fmt;
use mmu::{Descriptor, Pa, Vmid, Vttbr, Warning};
use serde::{Deserialize, Serialize};

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
    /// A descriptor write.
    Write { pa: Pa, old: Descriptor, new: Descriptor },
    /// A clean to the point of coherency.
    Clean { pa: Pa, len: u32 },
    /// TLB invalidation of one VMID.
    TlbiVmid { vmid: Vmid },
    /// TLB invalidation of every guest entry.
    TlbiAll,
    /// A `WARN_ON`.
    Warn { warning: Warning },
    /// A VM's VTTBR changed (new VMID).
    Vttbr { vm: u8, vttbr: Vttbr },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Alloc { pa, order } => write!(f, "alloc {pa} order {order}"),
            Event::AllocFail { order, injected } => {
                write!(
                    f,
                    "alloc order {order} failed ({})",
                    if *injected { "injected" } else { "pool exhausted" }
                )
            }
            Event::Free { pa, order } => write!(f, "free {pa} order {order}"),
            Event::Get { pa, count } => write!(f, "get {pa} -> {count}"),
            Event::Put { pa, count } => write!(f, "put {pa} -> {count}"),
            Event::Write { pa, old, new } => write!(f, "write {pa}: {old} -> {new}"),
            Event::Clean { pa, len } => write!(f, "clean {pa} +{len:#x}"),
            Event::TlbiVmid { vmid } => write!(f, "tlbi vmid {vmid}"),
            Event::TlbiAll => write!(f, "tlbi all"),
            Event::Warn { warning } => write!(f, "WARN {warning:?}"),
            Event::Vttbr { vm, vttbr } => {
                write!(f, "vm {vm} vttbr {vttbr} (vmid {})", vttbr.vmid())
            }
        }
    }
}
