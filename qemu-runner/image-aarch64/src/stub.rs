//! The guest side: the stub page ([`STUB_FRAME`], mapped by every VM at [`STUB_IPA`]),
//! the guest's EL1 system registers, and the ERET/exit assembly.
//!
//! Stub page layout (the same offsets at PA [`STUB_FRAME`], IPA and guest VA [`STUB_IPA`]):
//! - 0x000 guest vectors (VBAR_EL1): entry `n` (at `n * 0x80`) is `hvc #0x10 + n`;
//! - 0x800 the access stub: x0 = 0 load / 1 store, x1 = address, x2 = value;
//!   `ldr w2, [x1]; hvc #0` or `str w2, [x1]; hvc #1`;
//! - 0xc00 the guest's stage-1 level-1 table for [`GuestMode::Identity`]: 128 identity
//!   1 GiB blocks (VA = IPA < 2^37), normal write-back (MAIR attr 0), EL1 RW, executable.
//!
//! The EL1 registers are written once by [`init`]; only SCTLR_EL1.M changes, when the
//! guest mode does ([`set_mode`]): on QEMU 7.2 every SCTLR/TCR write flushes the TLB.

use crate::el2;
use crate::layout::{
    PAGE_SIZE, STUB_CODE_OFFSET, STUB_FRAME, STUB_IPA, STUB_S1_TABLE_OFFSET, STUB_VECTORS_OFFSET,
};
use crate::sync::RacyCell;
use core::arch::{asm, global_asm};

/// How the guest translates its own addresses at stage 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMode {
    /// SCTLR_EL1.M = 0: VA = IPA, data accesses Device-nGnRnE at stage 1.
    MmuOff,
    /// SCTLR_EL1.M = 1 with the identity map in the stub page: stage-1 walks go through
    /// stage 2 at [`S1_TABLE_IPA`], TLB entries combine stage 1 and 2.
    Identity,
}

/// IPA of the guest's stage-1 table (TTBR0_EL1).
pub const S1_TABLE_IPA: u64 = STUB_IPA + STUB_S1_TABLE_OFFSET as u64;
/// Number of 1 GiB blocks in the identity map: guest IPAs below 2^37 in [`GuestMode::Identity`].
pub const S1_BLOCKS: u64 = 128;
/// Guest VA (= IPA) of the stub entry point.
pub const STUB_ENTRY: u64 = STUB_IPA + STUB_CODE_OFFSET as u64;
/// HVC immediate of guest vector 0; vector `n` uses `HVC_GUEST_VECTOR + n`.
pub const HVC_GUEST_VECTOR: u64 = 0x10;
/// Guest PSTATE on entry: EL1h, DAIF masked (IRQs still reach EL2 through HCR_EL2.IMO).
pub const GUEST_SPSR: u64 = 0x3c5;

/// Stage-1 block: valid block, AttrIndx 0, AP EL1 RW, inner shareable, AF, UXN.
const S1_BLOCK: u64 = 0b01 | (0b11 << 8) | (1 << 10) | (1 << 54);
/// MAIR_EL1: attr0 normal write-back RW-allocate, attr1 Device-nGnRnE.
const GUEST_MAIR: u64 = 0x00ff;
/// TCR_EL1: T0SZ 27 (37-bit VA, walk starts at level 1 with 128 entries), IRGN0/ORGN0
/// write-back, SH0 inner, TG0 4 KiB, EPD1 (no TTBR1 walks), IPS 40 bits.
const GUEST_TCR: u64 = 27 | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (1 << 23) | (0b010 << 32);
/// SCTLR_EL1 RES1 bits (ARMv8.0) plus C and I; M is added for [`GuestMode::Identity`].
const GUEST_SCTLR: u64 = 0x30d0_0800 | (1 << 2) | (1 << 12);
const SCTLR_M: u64 = 1 << 0;

/// A64 `b .`.
pub const INSN_SPIN: u32 = 0x1400_0000;
/// A64 `udf #0`.
pub const INSN_UDF: u32 = 0x0000_0000;

/// A64 `hvc #imm`.
const fn hvc(imm: u64) -> u32 {
    0xd400_0002 | ((imm as u32 & 0xffff) << 5)
}

static MODE: RacyCell<Option<GuestMode>> = RacyCell::new(None);

global_asm!(
    // The access stub: position-independent, copied to STUB_FRAME + STUB_CODE_OFFSET.
    ".pushsection .text.stagehand_guest_stub, \"ax\"",
    ".balign 8",
    ".global stagehand_guest_stub",
    ".type stagehand_guest_stub, %function",
    "stagehand_guest_stub:",
    "    cbnz x0, 1f",
    "    ldr w2, [x1]",
    "    hvc #0",
    "    b .",
    "1:  str w2, [x1]",
    "    hvc #1",
    "    b .",
    ".size stagehand_guest_stub, . - stagehand_guest_stub",
    ".global stagehand_guest_stub_end",
    "stagehand_guest_stub_end:",
    ".popsection",
);

extern "C" {
    static stagehand_guest_stub: [u32; 0];
    static stagehand_guest_stub_end: [u32; 0];
}

/// Which code the guest runs from [`STUB_ENTRY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StubKind {
    /// The access stub.
    Normal,
    /// `b .`: never traps back (exercises the watchdog).
    Spin,
    /// The access stub with its first instruction replaced by this A64 word (e.g.
    /// [`INSN_UDF`] to exercise the guest's vectors).
    FirstWord(u32),
}

fn word(offset: usize) -> *mut u32 {
    (STUB_FRAME + offset) as *mut u32
}

/// Clean + invalidate the stub page to PoC (the guest may see it cacheable while EL2
/// writes it with the MMU off), then invalidate the I-cache for rewritten code.
fn sync_stub_page() {
    let line = el2::dcache_line_size();
    for pa in (STUB_FRAME..STUB_FRAME + PAGE_SIZE).step_by(line) {
        // Safe because cleaning and invalidating by PA never loses data in this page (EL2
        // writes it non-cacheable, so no dirty line holds newer data).
        unsafe { asm!("dc civac, {}", in(reg) pa, options(nostack)) };
    }
    // Safe because invalidating the I-cache only costs refetches.
    unsafe { asm!("dsb ish", "ic ialluis", "dsb ish", "isb", options(nostack)) };
}

/// Writes the guest vectors and code into [`STUB_FRAME`] (the stage-1 table is left alone).
pub fn install_stub(kind: StubKind) {
    for n in 0..16usize {
        // Safe because STUB_FRAME is a page reserved for the guest that no Rust object uses.
        unsafe { word(STUB_VECTORS_OFFSET + n * 0x80).write_volatile(hvc(HVC_GUEST_VECTOR + n as u64)) };
    }
    // Safe because the symbols delimit the stub in .text and it fits its slot (asserted).
    unsafe {
        let start = stagehand_guest_stub.as_ptr();
        let words = (stagehand_guest_stub_end.as_ptr() as usize - start as usize) / 4;
        assert!(STUB_CODE_OFFSET + words * 4 <= STUB_S1_TABLE_OFFSET, "guest stub overflows its slot");
        for i in 0..words {
            word(STUB_CODE_OFFSET + i * 4).write_volatile(start.add(i).read());
        }
    }
    let first = match kind {
        StubKind::Normal => None,
        StubKind::Spin => Some(INSN_SPIN),
        StubKind::FirstWord(w) => Some(w),
    };
    if let Some(w) = first {
        // Safe because the entry word lies in the reserved stub page.
        unsafe { word(STUB_CODE_OFFSET).write_volatile(w) };
    }
    sync_stub_page();
}

/// Sets up the stub page, the identity stage-1 table and the guest's EL1 registers
/// (MMU off until the first [`GuestMode::Identity`] access). Called once by boot.
pub fn init() {
    install_stub(StubKind::Normal);
    for i in 0..S1_BLOCKS as usize {
        let entry = (STUB_FRAME + STUB_S1_TABLE_OFFSET + i * 8) as *mut u64;
        // Safe because the table lies in the reserved stub page, 8-byte aligned.
        unsafe { entry.write_volatile(((i as u64) << 30) | S1_BLOCK) };
    }
    sync_stub_page();
    // Safe because these are the EL1 registers of the guest, which is not running.
    unsafe {
        asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {ttbr0}",
            "msr ttbr1_el1, xzr",
            "msr vbar_el1, {vbar}",
            "msr cpacr_el1, xzr", // guest FP/SIMD traps to its own vectors
            "msr sp_el1, xzr",
            "msr sctlr_el1, {sctlr}",
            "isb",
            mair = in(reg) GUEST_MAIR,
            tcr = in(reg) GUEST_TCR,
            ttbr0 = in(reg) S1_TABLE_IPA,
            vbar = in(reg) STUB_IPA + STUB_VECTORS_OFFSET as u64,
            sctlr = in(reg) GUEST_SCTLR,
            options(nostack),
        );
    }
    MODE.store(Some(GuestMode::MmuOff));
}

/// Switches the guest's stage-1 MMU for the next entries; writes SCTLR_EL1 only when the
/// mode changes.
pub fn set_mode(mode: GuestMode) {
    if MODE.load() == Some(mode) {
        return;
    }
    let sctlr = match mode {
        GuestMode::MmuOff => GUEST_SCTLR,
        GuestMode::Identity => GUEST_SCTLR | SCTLR_M,
    };
    // Safe because the guest is not running; the identity map covers the stub page.
    unsafe { asm!("msr sctlr_el1, {}", "isb", in(reg) sctlr, options(nostack)) };
    MODE.store(Some(mode));
}

/// The mode of the last guest entry.
pub fn mode() -> GuestMode {
    MODE.load().unwrap_or(GuestMode::MmuOff)
}

/// Writes TTBR0_EL1 (the guest's stage-1 root IPA), for experiments; [`init`] sets it to
/// [`S1_TABLE_IPA`]. The caller owns any TLB maintenance this needs.
pub fn set_ttbr0(ipa: u64) {
    // Safe because the guest is not running.
    unsafe { asm!("msr ttbr0_el1, {}", "isb", in(reg) ipa, options(nostack)) };
}

/// ESR_EL1: the syndrome of the guest's last exception to its own vectors.
pub fn esr_el1() -> u64 {
    let v: u64;
    // Safe because reading ESR_EL1 has no side effects.
    unsafe { asm!("mrs {}, esr_el1", out(reg) v, options(nomem, nostack)) };
    v
}
