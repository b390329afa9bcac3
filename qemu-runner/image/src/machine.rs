//! The real Hyp-mode machine below the shared platform layer: table memory is RAM (Hyp's
//! MMU is off, so VA = PA), cleans are DCCMVAC, invalidations are real TLB maintenance, and
//! a guest access is a real ERET into the guest stub.

use crate::guest::{self, GuestOutcome};
use crate::hyp;
use crate::layout::{self, POOL, POOL_PAGES};
use crate::sync::RacyCell;
use harness_core::arch::tlb::Tlbi;
use harness_core::arch::{Geometry, Ipa, Pa, Vttbr};
use harness_core::layout::POISON;
use harness_core::machine::{Abort, AbortOn, AccessKind, AccessOutcome, Fault, FaultKind, Machine};
use harness_core::op::Config;

/// Pool pages written since the last reset (one past the highest).
static HIGH: RacyCell<usize> = RacyCell::new(0);
/// A guest store happened since the last reset: the signatures need refilling.
static GUEST_WROTE: RacyCell<bool> = RacyCell::new(false);

/// The Hyp-mode machine. Its state lives in statics: there is one CPU.
pub struct HypMachine;

fn word(pa: Pa) -> Option<*mut u64> {
    let a = pa.0 as usize;
    (POOL.contains(&a) && a.is_multiple_of(8)).then_some(a as *mut u64)
}

fn note(pa: Pa) {
    let page = (pa.0 as usize - POOL.start) / layout::PAGE_SIZE + 1;
    if page > HIGH.load() {
        HIGH.store(page);
    }
}

/// Fills `n` (a multiple of 8) words at `p`, a pool address, with 64-bit stores unrolled by
/// eight (the generic `memset` of this target stores bytes; under QEMU's TCG every store
/// instruction counts).
fn fill_words(p: *mut u64, n: usize, value: u64) {
    let mut i = 0;
    while i < n {
        // Safe because callers pass ranges inside the table pool, which no Rust reference
        // covers; only this platform reads it, with volatile loads.
        unsafe {
            for k in 0..8 {
                p.add(i + k).write_volatile(value);
            }
        }
        i += 8;
    }
}

impl HypMachine {
    /// Zeroes the whole table pool (a board's RAM holds garbage at boot).
    pub fn zero_pool() {
        fill_words(POOL.start as *mut u64, POOL_PAGES * 512, 0);
    }
}

impl Machine for HypMachine {
    fn read(&mut self, pa: Pa) -> u64 {
        // Safe because `word` only accepts aligned addresses inside the table pool (RAM).
        word(pa).map_or(POISON, |p| unsafe { p.read_volatile() })
    }

    fn read_pool(&mut self, page: usize, word: usize, _: Pa) -> u64 {
        let p = (POOL.start + page * layout::PAGE_SIZE + word * 8) as *const u64;
        // Safe because the host layer passes a page index below POOL_PAGES and a word below 512.
        unsafe { p.read_volatile() }
    }

    fn write(&mut self, pa: Pa, value: u64) {
        if let Some(p) = word(pa) {
            note(pa);
            // Safe because `word` only accepts aligned addresses inside the table pool (RAM).
            unsafe { p.write_volatile(value) };
        }
    }

    fn fill_page(&mut self, pa: Pa, value: u64) {
        if let Some(p) = word(pa.page()) {
            note(pa);
            fill_words(p, 512, value);
        }
    }

    fn clean(&mut self, pa: Pa, len: u64) {
        hyp::dcache_clean_range(pa.0 as usize, len as usize);
    }

    fn tlbi(&mut self, op: Tlbi) {
        match op {
            // `__kvm_tlb_flush_vmid`: TLBIALLIS under the VMID's VTTBR.
            Tlbi::Vmid(vmid) => hyp::tlb_flush_vmid(hyp::GEOMETRY.vttbr(Pa(0), vmid).0),
            // ARMv7 has no invalidation by IPA (TLBIIPAS2 is ARMv8 AArch32): the AArch64
            // scopes never reach this image, and would be over-invalidated if they did.
            _ => hyp::stagehand_tlb_flush_all(),
        }
    }

    fn dsb(&mut self) {
        // Safe because a barrier has no effect besides ordering.
        unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
    }

    fn guest_access(
        &mut self,
        vttbr: Vttbr,
        ipa: Ipa,
        kind: AccessKind,
    ) -> (AccessOutcome, Option<AccessOutcome>) {
        let write = match kind {
            AccessKind::Read => None,
            AccessKind::Write(v) => {
                GUEST_WROTE.store(true);
                Some(v)
            }
        };
        let o = guest::guest_access(vttbr.0, ipa.0, write);
        let outcome = match o {
            GuestOutcome::Loaded(v) => AccessOutcome::Read(v),
            GuestOutcome::Stored => AccessOutcome::Written,
            GuestOutcome::Stage2Abort { hsr, .. } => match o.fault() {
                Some(f) => {
                    let kind = match f.kind {
                        guest::FaultKind::Translation => Some(FaultKind::Translation),
                        guest::FaultKind::AccessFlag => Some(FaultKind::AccessFlag),
                        guest::FaultKind::Permission => Some(FaultKind::Permission),
                        _ => None,
                    };
                    let on = if f.s1ptw {
                        AbortOn::S1Walk
                    } else if f.instruction {
                        AbortOn::Fetch
                    } else {
                        AbortOn::Data
                    };
                    match kind {
                        Some(kind) => AccessOutcome::Abort(Abort {
                            on,
                            fault: Fault { kind, level: f.level.unwrap_or(0) },
                            ipa: Ipa(f.ipa).page(),
                        }),
                        None => AccessOutcome::HypException(hsr),
                    }
                }
                None => AccessOutcome::HypException(hsr),
            },
            GuestOutcome::GuestException { vector } => AccessOutcome::GuestException(vector * 4),
            GuestOutcome::Timeout => AccessOutcome::Timeout,
            GuestOutcome::HypException { hsr, .. } => AccessOutcome::HypException(hsr),
        };
        (outcome, None)
    }

    fn reset(&mut self, _config: &Config, _geometry: &Geometry, pool_pages_used: usize) {
        let used = pool_pages_used.max(HIGH.load()).min(POOL_PAGES);
        fill_words(POOL.start as *mut u64, used * 512, 0);
        HIGH.store(0);
        if GUEST_WROTE.load() {
            layout::refill_signatures();
            GUEST_WROTE.store(false);
        }
        hyp::stagehand_tlb_flush_all();
        guest::forget_window_tlb_state();
    }
}
