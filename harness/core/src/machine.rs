//! The hardware seam: what differs between the simulator and real Hyp mode. Everything
//! above it (allocation, refcounts, events, oracles, the executor) is shared code.

use crate::arch::tlb::Tlbi;
pub use crate::arch::walk::{Fault, FaultKind};
use crate::arch::{Geometry, Ipa, Pa, Vttbr};
use crate::op::Config;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// A guest memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessKind {
    /// Load a 32-bit word.
    Read,
    /// Store a 32-bit word.
    Write(u32),
}

/// Which translation of a guest access took the stage-2 abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AbortOn {
    /// The guest's stage-1 walk reading its own table in the stub page (HSR.S1PTW).
    S1Walk,
    /// Fetching the stub's instructions (EC 0x20).
    Fetch,
    /// The load or store itself (EC 0x24).
    Data,
}

/// A stage-2 abort taken by a guest access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Abort {
    /// Which translation aborted.
    pub on: AbortOn,
    /// Class and level.
    pub fault: Fault,
    /// The faulting IPA, page aligned (HPFAR).
    pub ipa: Ipa,
}

/// What a guest access did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessOutcome {
    /// The load returned this word.
    Read(u32),
    /// The store completed.
    Written,
    /// A stage-2 abort was taken to Hyp mode.
    Abort(Abort),
    /// The guest took an exception of its own (vector offset); never expected.
    GuestException(u32),
    /// The guest never trapped back within the watchdog budget.
    Timeout,
    /// Hyp mode itself took an exception (HSR) while running the access.
    HypException(u32),
}

/// The machine below the shared platform layer.
pub trait Machine {
    /// True for a simulation, where a table entry that maps a frame outside every window
    /// harms nothing: the executor then lets frames beyond the physical address space reach
    /// the target, whose own checks must refuse them. Hardware never sees them.
    fn simulated(&self) -> bool {
        false
    }
    /// Reads a 64-bit word of table memory as the CPU sees it (no checks, no events).
    fn read(&mut self, pa: Pa) -> u64;
    /// Reads word `word` (0..512) of pool page `page`, already known to be in the pool: the
    /// hot path of every descriptor read.
    fn read_pool(&mut self, page: usize, word: usize, pa: Pa) -> u64 {
        let _ = (page, word);
        self.read(pa)
    }
    /// Appends `(word, old, new)` for every word of pool page `page` (below `POOL_PAGES`)
    /// that differs from `shadow`, as the CPU sees it: how a memory-owning target's tables
    /// are diffed.
    fn diff_page(&mut self, page: usize, shadow: &[u64; 512], out: &mut Vec<(usize, u64, u64)>) {
        let base = crate::layout::Layout::default().pool_base();
        for (w, &old) in shadow.iter().enumerate() {
            let new = self.read_pool(page, w, base);
            if new != old {
                out.push((w, old, new));
            }
        }
    }
    /// Writes a 64-bit word of table memory (through the data cache).
    fn write(&mut self, pa: Pa, value: u64);
    /// Fills a whole page with `value` (zeroing at allocation, poisoning at free).
    fn fill_page(&mut self, pa: Pa, value: u64);
    /// Cleans `[pa, pa + len)` to the point of coherency.
    fn clean(&mut self, pa: Pa, len: u64);
    /// Performs a TLB invalidation with its architectural scope (for AArch64, with VTTBR
    /// set to the VMID it names while it executes).
    fn tlbi(&mut self, op: Tlbi);
    /// A TLB invalidation the target's own code has already executed on this machine
    /// ([`crate::target::Services::tlbi_executed`]). A model performs it, as
    /// [`Machine::tlbi`]; real hardware has nothing left to do.
    fn tlbi_executed(&mut self, op: Tlbi) {
        self.tlbi(op);
    }
    /// A data synchronization barrier.
    fn dsb(&mut self);
    /// Runs the guest stub once under `vttbr` to perform `kind` at `ipa` (word aligned).
    /// `fresh` is what a walk of the tables as the CPU wrote them gives (no TLB, no cache
    /// lag) when the machine's answer differs from it: a stale TLB entry or an uncleaned
    /// descriptor. Only a model can know it; hardware returns `None`.
    fn guest_access(
        &mut self,
        vttbr: Vttbr,
        ipa: Ipa,
        kind: AccessKind,
    ) -> (AccessOutcome, Option<AccessOutcome>);
    /// Back to the state of a fresh boot between sequences, for `config` and the target's
    /// `geometry`: zeroes the pool pages used so far (at least the first `pool_pages_used`),
    /// restores every guest frame's signature, empties the TLB. Within a sequence, freed
    /// pages hold poison.
    fn reset(&mut self, config: &Config, geometry: &Geometry, pool_pages_used: usize);
    /// Where a memory-owning target may write pool page `page` directly (its tables live
    /// there); `None` when the machine cannot hand out memory.
    fn page_ptr(&mut self, page: usize) -> Option<core::ptr::NonNull<u64>> {
        let _ = page;
        None
    }
}

impl fmt::Display for AbortOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbortOn::S1Walk => "stage-1 walk",
            AbortOn::Fetch => "fetch",
            AbortOn::Data => "data",
        })
    }
}

impl fmt::Display for AccessOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessOutcome::Read(v) => write!(f, "read {v:#010x}"),
            AccessOutcome::Written => write!(f, "written"),
            AccessOutcome::Abort(a) => write!(f, "{} abort at {}: {}", a.on, a.ipa, a.fault),
            AccessOutcome::GuestException(v) => write!(f, "guest exception (vector {v:#x})"),
            AccessOutcome::Timeout => write!(f, "timeout: the guest never trapped back"),
            AccessOutcome::HypException(hsr) => write!(f, "Hyp exception (HSR {hsr:#010x})"),
        }
    }
}
