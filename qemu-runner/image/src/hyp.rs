//! Hyp (PL2) control: stage-2 configuration, VTTBR, and the named TLB / cache routines.
//!
//! The `stagehand_*` routines are naked `extern "C"` functions with stable symbol names,
//! so the host harness can disassemble them by symbol (they are `KEEP`'d by `link.x`).

use core::arch::{asm, naked_asm};
use harness_core::arch::{Geometry, Pa, Vmid, Vttbr};

/// The stage-2 geometry the image programs, from the harness's architecture layer (so the
/// self-test checks that layer against QEMU): 40-bit IPA, walks from level 1, 8 KiB root.
pub const GEOMETRY: Geometry = Geometry::ARMV7_40BIT;

/// VTCR for [`GEOMETRY`]: T0SZ = -8 (0b1000) with S = 1 (its sign), SL0 = 1, IRGN0 = ORGN0 =
/// write-back write-allocate, SH0 = inner shareable, bit 31 RES1.
pub const VTCR_40BIT: u32 = GEOMETRY.vtcr(false) as u32;

/// HCR.VM: stage 2 on for the PL1&0 regime.
pub const HCR_VM: u32 = 1 << 0;
/// HCR.FMO: physical FIQs go to Hyp.
pub const HCR_FMO: u32 = 1 << 3;
/// HCR.IMO: physical IRQs go to Hyp (the watchdog timer), whatever the guest's CPSR.I.
pub const HCR_IMO: u32 = 1 << 4;
/// HCR.AMO: asynchronous aborts go to Hyp.
pub const HCR_AMO: u32 = 1 << 5;
/// What [`init`] programs: stage 2 on, interrupts and async aborts routed to Hyp.
pub const HCR_GUEST: u32 = HCR_VM | HCR_IMO | HCR_FMO | HCR_AMO;

/// Alignment of the stage-2 root for [`VTCR_40BIT`] (VTTBR.BADDR starts at bit 13).
pub const ROOT_ALIGN: u64 = GEOMETRY.root_bytes();

/// HSCTLR bits [`init`] clears: M (stage-1 MMU), A (alignment check), WXN, EE (big-endian
/// exceptions), TE (Thumb exceptions: the vectors are A32).
const HSCTLR_CLEAR: u32 = (1 << 0) | (1 << 1) | (1 << 19) | (1 << 25) | (1 << 30);

/// Builds a VTTBR value: root table PA (8 KiB aligned, < 2^40) and VMID (bits 55:48).
pub const fn make_vttbr(root_pa: u64, vmid: u8) -> u64 {
    GEOMETRY.vttbr(Pa(root_pa), Vmid(vmid as u16)).0
}

/// VMID field of a VTTBR value.
pub const fn vttbr_vmid(vttbr: u64) -> u8 {
    Vttbr(vttbr).vmid_field().0 as u8
}

/// Puts Hyp into a known state and enables stage 2 for guests: HSCTLR (MMU off, A32
/// little-endian exceptions), VTCR = [`VTCR_40BIT`], HCR = [`HCR_GUEST`], VTTBR = 0,
/// then invalidates every TLB entry (Hyp and all VMIDs).
pub fn init() {
    // Safe because these are Hyp system registers; with no guest running, changing them
    // only affects future guest entries (Hyp's own MMU stays off).
    unsafe {
        let hsctlr: u32;
        asm!("mrc p15, 4, {}, c1, c0, 0", out(reg) hsctlr, options(nomem, nostack));
        asm!("mcr p15, 4, {}, c1, c0, 0", "isb", in(reg) hsctlr & !HSCTLR_CLEAR,
             options(nostack));
        asm!("mcr p15, 4, {}, c2, c1, 2", in(reg) VTCR_40BIT, options(nostack));
        asm!("mcr p15, 4, {}, c1, c1, 0", in(reg) HCR_GUEST, options(nostack));
    }
    write_vttbr(0);
    // Safe because invalidating TLBs never affects memory safety.
    unsafe {
        asm!(
            "dsb ish",
            "mcr p15, 4, {0}, c8, c3, 0", // TLBIALLHIS
            "mcr p15, 4, {0}, c8, c3, 4", // TLBIALLNSNHIS
            "dsb ish",
            "isb",
            in(reg) 0, options(nostack),
        );
    }
}

/// Current VTTBR.
pub fn vttbr() -> u64 {
    let (lo, hi): (u32, u32);
    // Safe because reading VTTBR has no side effects.
    unsafe { asm!("mrrc p15, 6, {}, {}, c2", out(reg) lo, out(reg) hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes VTTBR (+ ISB). Note that QEMU flushes all guest TLB entries whenever the value
/// changes (root *or* VMID), so a switch between VMs hides stale entries on QEMU.
pub fn write_vttbr(value: u64) {
    // Safe because no guest is running; the next guest entry uses the new tables.
    unsafe {
        asm!("mcrr p15, 6, {}, {}, c2", "isb", in(reg) value as u32,
             in(reg) (value >> 32) as u32, options(nostack));
    }
}

/// Current HCR.
pub fn hcr() -> u32 {
    let v: u32;
    // Safe because reading HCR has no side effects.
    unsafe { asm!("mrc p15, 4, {}, c1, c1, 0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Current VTCR.
pub fn vtcr() -> u32 {
    let v: u32;
    // Safe because reading VTCR has no side effects.
    unsafe { asm!("mrc p15, 4, {}, c2, c1, 2", out(reg) v, options(nomem, nostack)) };
    v
}

/// Cache line size for data cache maintenance (CTR.DminLine).
pub fn dcache_line_size() -> usize {
    let ctr: u32;
    // Safe because reading CTR has no side effects.
    unsafe { asm!("mrc p15, 0, {}, c0, c0, 1", out(reg) ctr, options(nomem, nostack)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Invalidates every stage-1 and stage-2 TLB entry of one VMID, like Linux's
/// `__kvm_tlb_flush_vmid` (arch/arm/kvm/hyp/tlb.c): make prior table writes visible,
/// switch VTTBR to the target, TLBIALLIS (which from Hyp applies to the VMID in VTTBR),
/// then restore the caller's VTTBR.
///
/// On QEMU 7.2 TLBIALLIS flushes every guest entry regardless of VMID, and writing a
/// VTTBR value that differs from the current one flushes too; see NOTES.md.
// Safe because the routine only touches VTTBR (restored before returning) and TLBs.
#[unsafe(naked)]
#[no_mangle]
pub extern "C" fn stagehand_tlb_flush_vmid(vttbr_lo: u32, vttbr_hi: u32) {
    naked_asm!(
        "dsb ishst",               // table updates visible to the walker first
        "mrrc p15, 6, r2, r3, c2", // save VTTBR
        "mcrr p15, 6, r0, r1, c2", // VTTBR = target VMID
        "isb",
        "mcr p15, 0, r0, c8, c3, 0", // TLBIALLIS (current VMID, inner shareable)
        "dsb ish",
        "isb",
        "mcrr p15, 6, r2, r3, c2", // restore VTTBR
        "isb",
        "bx lr",
    )
}

/// Invalidates every non-secure non-Hyp TLB entry, all VMIDs (TLBIALLNSNHIS).
// Safe because the routine only invalidates TLBs.
#[unsafe(naked)]
#[no_mangle]
pub extern "C" fn stagehand_tlb_flush_all() {
    naked_asm!(
        "dsb ishst",
        "mcr p15, 4, r0, c8, c3, 4", // TLBIALLNSNHIS
        "dsb ish",
        "isb",
        "bx lr",
    )
}

/// Cleans `[pa, pa + len)` to the point of coherency, one DCCMVAC per line (line size
/// from CTR.DminLine), then DSB, so a non-coherent table walker sees descriptor writes.
/// Hyp's MMU is off, so the VA operand is the PA.
// Safe because cleaning writes dirty lines back and never loses data.
#[unsafe(naked)]
#[no_mangle]
pub extern "C" fn stagehand_dcache_clean_range(pa: u32, len: u32) {
    naked_asm!(
        "mrc p15, 0, r3, c0, c0, 1", // CTR
        "ubfx r3, r3, #16, #4",      // DminLine = log2(words per line)
        "mov r2, #4",
        "lsl r2, r2, r3", // line size in bytes
        "add r1, r0, r1", // end
        "sub r3, r2, #1",
        "bic r0, r0, r3", // first line
        "1:",
        "cmp r0, r1",
        "bhs 2f",
        "mcr p15, 0, r0, c7, c10, 1", // DCCMVAC
        "add r0, r0, r2",
        "b 1b",
        "2:",
        "dsb ish",
        "bx lr",
    )
}

/// The seed's `__kvm_tlb_flush_vmid`: no invalidation at all (defect `tlb-flush-stub`).
// Safe because it does nothing.
#[unsafe(naked)]
#[no_mangle]
pub extern "C" fn stagehand_tlb_flush_vmid_stub(vttbr_lo: u32, vttbr_hi: u32) {
    naked_asm!("bx lr")
}

/// [`stagehand_tlb_flush_vmid`] taking a VTTBR value.
pub fn tlb_flush_vmid(vttbr: u64) {
    stagehand_tlb_flush_vmid(vttbr as u32, (vttbr >> 32) as u32);
}

/// [`stagehand_dcache_clean_range`] for a PA range.
pub fn dcache_clean_range(pa: usize, len: usize) {
    stagehand_dcache_clean_range(pa as u32, len as u32);
}
