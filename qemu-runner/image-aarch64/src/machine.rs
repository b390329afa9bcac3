//! The real EL2 machine below the shared platform layer (`harness_core::machine::Machine`):
//! table memory is RAM (EL2's MMU is off, so VA = PA), cleans are DC CVAC, each TLB
//! invalidation is the instruction it names, executed with the VM's VMID in VTTBR_EL2, and
//! a guest access is a real ERET into the guest stub, in the configuration's guest mode.

use crate::guest::{self, Access, GuestMode, GuestOutcome};
use crate::layout::{self, PAGE_SIZE, POOL, POOL_PAGES};
use crate::sync::RacyCell;
use crate::{el2, fault::FaultClass, tlb};
use core::ptr::NonNull;
use harness_core::arch::tlb::Tlbi;
use harness_core::arch::{Geometry, Ipa, Pa, Vmid, Vttbr};
use harness_core::layout::POISON;
use harness_core::machine::{Abort, AbortOn, AccessKind, AccessOutcome, Fault, FaultKind, Machine};
use harness_core::op::{Config, Guest};

/// Pool pages written, or handed to the target to write, since the last reset (one past the
/// highest).
static HIGH: RacyCell<usize> = RacyCell::new(0);
/// A guest store happened since the last reset: the signatures need refilling.
static GUEST_WROTE: RacyCell<bool> = RacyCell::new(false);

/// The EL2 machine: what a sequence's configuration selects (its state lives in the CPU).
pub struct El2Machine {
    geometry: Geometry,
    vtcr: u64,
    mode: GuestMode,
}

impl Default for El2Machine {
    fn default() -> Self {
        let geometry = match Geometry::aarch64(25, 1) {
            Ok(g) => g,
            Err(_) => unreachable!("T0SZ 25, SL0 1 is a valid geometry"),
        };
        El2Machine { geometry, vtcr: geometry.vtcr(false), mode: GuestMode::MmuOff }
    }
}

fn word(pa: Pa) -> Option<*mut u64> {
    let a = pa.0 as usize;
    (POOL.contains(&a) && a.is_multiple_of(8)).then_some(a as *mut u64)
}

fn note(pa: Pa) {
    let page = (pa.0 as usize - POOL.start) / PAGE_SIZE + 1;
    if page > HIGH.load() {
        HIGH.store(page);
    }
}

/// Fills `n` (a multiple of 8) words at `p`, a pool address, with 64-bit stores.
fn fill_words(p: *mut u64, n: usize, value: u64) {
    let mut i = 0;
    while i < n {
        // Safe because callers pass ranges inside the table pool, which no Rust reference
        // covers; the platform and the target's tables are its only users.
        unsafe {
            for k in 0..8 {
                p.add(i + k).write_volatile(value);
            }
        }
        i += 8;
    }
}

/// VTTBR_EL2 for maintenance on behalf of `vmid`: the current value when it already holds
/// that VMID (no write: on QEMU a VMID change flushes every EL1&0 entry), else BADDR 0 with
/// the VMID (no guest runs before `guest_access` writes the VM's own value).
fn vttbr_for(geometry: &Geometry, vmid: Vmid) -> u64 {
    let current = el2::vttbr();
    if current >> 48 == u64::from(vmid.0) {
        current
    } else {
        geometry.vttbr(Pa(0), vmid).0
    }
}

/// ID_AA64MMFR1_EL1.VMIDBits says 16-bit VMIDs are implemented (QEMU's cortex-a57: 8 bits).
fn vmid16_implemented() -> bool {
    let v: u64;
    // Safe because reading an ID register has no side effects.
    unsafe { core::arch::asm!("mrs {}, id_aa64mmfr1_el1", out(reg) v, options(nomem, nostack)) };
    (v >> 4) & 0xf == 0b0010
}

fn fault_kind(class: FaultClass) -> Option<FaultKind> {
    match class {
        FaultClass::Translation => Some(FaultKind::Translation),
        FaultClass::AccessFlag => Some(FaultKind::AccessFlag),
        FaultClass::Permission => Some(FaultKind::Permission),
        FaultClass::Other => None,
    }
}

fn outcome(o: GuestOutcome) -> AccessOutcome {
    match o {
        GuestOutcome::Loaded(v) => AccessOutcome::Read(v),
        GuestOutcome::Stored => AccessOutcome::Written,
        GuestOutcome::Stage2Abort { ipa, level, kind, s1ptw, instruction, esr, .. } => {
            let on = if s1ptw {
                AbortOn::S1Walk
            } else if instruction {
                AbortOn::Fetch
            } else {
                AbortOn::Data
            };
            match fault_kind(kind) {
                Some(kind) => {
                    AccessOutcome::Abort(Abort { on, fault: Fault { kind, level }, ipa: Ipa(ipa).page() })
                }
                None => AccessOutcome::HypException(esr as u32),
            }
        }
        // The guest's vector offset from VBAR_EL1.
        GuestOutcome::GuestException { vector, .. } => AccessOutcome::GuestException(vector as u32 * 0x80),
        GuestOutcome::Timeout => AccessOutcome::Timeout,
        GuestOutcome::El2Exception { esr, .. } => AccessOutcome::HypException(esr as u32),
    }
}

impl Machine for El2Machine {
    fn read(&mut self, pa: Pa) -> u64 {
        // Safe because `word` only accepts aligned addresses inside the table pool (RAM).
        word(pa).map_or(POISON, |p| unsafe { p.read_volatile() })
    }

    fn read_pool(&mut self, page: usize, word: usize, _: Pa) -> u64 {
        let p = (POOL.start + page * PAGE_SIZE + word * 8) as *const u64;
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
        tlb::dcache_clean_range(pa.0 as usize, len as usize);
    }

    fn tlbi(&mut self, op: Tlbi) {
        let g = &self.geometry;
        match op {
            Tlbi::Ipas2 { vmid, ipa } => tlb::stagehand_tlbi_ipas2e1is(vttbr_for(g, vmid), ipa.0),
            Tlbi::Vmalle1(vmid) => tlb::stagehand_tlbi_vmalle1is(vttbr_for(g, vmid)),
            // ARMv7's whole-VMID flush has this AArch64 equivalent.
            Tlbi::Vmalls12e1(vmid) | Tlbi::Vmid(vmid) => tlb::stagehand_tlbi_vmalls12e1is(vttbr_for(g, vmid)),
            Tlbi::All => tlb::stagehand_tlbi_alle1is(),
        }
    }

    fn tlbi_executed(&mut self, _: Tlbi) {
        // The target's own instruction ran at EL2 and has invalidated already.
    }

    fn dsb(&mut self) {
        tlb::stagehand_dsb_ish();
    }

    fn guest_access(
        &mut self,
        vttbr: Vttbr,
        ipa: Ipa,
        kind: AccessKind,
    ) -> (AccessOutcome, Option<AccessOutcome>) {
        let access = match kind {
            AccessKind::Read => Access::Load,
            AccessKind::Write(v) => {
                GUEST_WROTE.store(true);
                Access::Store(v)
            }
        };
        (outcome(guest::guest_access(self.vtcr, vttbr.0, ipa.0, access, self.mode)), None)
    }

    fn reset(&mut self, config: &Config, geometry: &Geometry, pool_pages_used: usize) {
        self.geometry = *geometry;
        self.vtcr = geometry.vtcr(config.vmid_bits == 16 && vmid16_implemented());
        self.mode = match config.guest {
            Guest::MmuOff => GuestMode::MmuOff,
            Guest::Identity => GuestMode::Identity,
        };
        let used = pool_pages_used.max(HIGH.load()).min(POOL_PAGES);
        fill_words(POOL.start as *mut u64, used * 512, 0);
        HIGH.store(0);
        if GUEST_WROTE.load() {
            layout::refill_signatures();
            GUEST_WROTE.store(false);
        }
        tlb::stagehand_tlbi_alle1is();
    }

    fn page_ptr(&mut self, page: usize) -> Option<NonNull<u64>> {
        if page >= POOL_PAGES {
            return None;
        }
        // The target writes the page behind the platform's back: it must be zeroed at reset.
        note(Pa((POOL.start + page * PAGE_SIZE) as u64));
        NonNull::new((POOL.start + page * PAGE_SIZE) as *mut u64)
    }
}
