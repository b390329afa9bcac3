//! The named TLB and cache maintenance primitives.
//!
//! Each is a naked `extern "C"` function with a stable symbol in its own
//! `.text.stagehand_*` section (`KEEP`'d by `link.x`), so the host harness can disassemble
//! it by symbol. A stage-2 TLBI from EL2 applies to the VMID in VTTBR_EL2 when it executes,
//! so the per-VM ones first set VTTBR_EL2 to the VM's value (only if it differs: on QEMU
//! 7.2 a VMID change flushes every EL1&0 entry) and leave it set, like
//! [`crate::guest::guest_access`]. None of them restores the previous VTTBR.

use core::arch::naked_asm;

/// `tlbi ipas2e1is, ipa >> 12` then `dsb ish`, for the VM of `vttbr`. Removes stage-2-only
/// entries for the IPA; architecturally combined stage 1+2 entries may survive it.
// Safe because the routine only writes VTTBR_EL2 (no guest runs) and invalidates TLBs.
#[unsafe(naked)]
#[no_mangle]
#[link_section = ".text.stagehand_tlbi_ipas2e1is"]
pub extern "C" fn stagehand_tlbi_ipas2e1is(vttbr: u64, ipa: u64) {
    naked_asm!(
        "mrs x2, vttbr_el2",
        "cmp x2, x0",
        "b.eq 1f",
        "msr vttbr_el2, x0",
        "isb",
        "1: lsr x1, x1, #12",
        "tlbi ipas2e1is, x1",
        "dsb ish",
        "ret",
    )
}

/// `tlbi vmalle1is` then `dsb ish`, for the VM of `vttbr`: every stage-1 (and combined)
/// entry of that VMID.
// Safe because the routine only writes VTTBR_EL2 (no guest runs) and invalidates TLBs.
#[unsafe(naked)]
#[no_mangle]
#[link_section = ".text.stagehand_tlbi_vmalle1is"]
pub extern "C" fn stagehand_tlbi_vmalle1is(vttbr: u64) {
    naked_asm!(
        "mrs x2, vttbr_el2",
        "cmp x2, x0",
        "b.eq 1f",
        "msr vttbr_el2, x0",
        "isb",
        "1: tlbi vmalle1is",
        "dsb ish",
        "ret",
    )
}

/// `tlbi vmalls12e1is` then `dsb ish`, for the VM of `vttbr`: every stage-1 and stage-2
/// entry of that VMID.
// Safe because the routine only writes VTTBR_EL2 (no guest runs) and invalidates TLBs.
#[unsafe(naked)]
#[no_mangle]
#[link_section = ".text.stagehand_tlbi_vmalls12e1is"]
pub extern "C" fn stagehand_tlbi_vmalls12e1is(vttbr: u64) {
    naked_asm!(
        "mrs x2, vttbr_el2",
        "cmp x2, x0",
        "b.eq 1f",
        "msr vttbr_el2, x0",
        "isb",
        "1: tlbi vmalls12e1is",
        "dsb ish",
        "ret",
    )
}

/// `tlbi alle1is` then `dsb ish`: every EL1&0 entry of every VMID.
// Safe because the routine only invalidates TLBs.
#[unsafe(naked)]
#[no_mangle]
#[link_section = ".text.stagehand_tlbi_alle1is"]
pub extern "C" fn stagehand_tlbi_alle1is() {
    naked_asm!("tlbi alle1is", "dsb ish", "ret")
}

/// `dsb ish`.
// Safe because a barrier only orders memory accesses and maintenance.
#[unsafe(naked)]
#[no_mangle]
#[link_section = ".text.stagehand_dsb_ish"]
pub extern "C" fn stagehand_dsb_ish() {
    naked_asm!("dsb ish", "ret")
}

/// Cleans `[addr, addr + len)` to the point of coherency, one `dc cvac` per line (line size
/// from CTR_EL0.DminLine), then `dsb ish`, so a non-coherent table walker sees descriptor
/// writes. EL2's MMU is off, so the VA operand is the PA.
// Safe because cleaning writes dirty lines back and never loses data.
#[unsafe(naked)]
#[no_mangle]
#[link_section = ".text.stagehand_dcache_clean_range"]
pub extern "C" fn stagehand_dcache_clean_range(addr: u64, len: u64) {
    naked_asm!(
        "mrs x3, ctr_el0",
        "ubfx x3, x3, #16, #4", // DminLine = log2(words per line)
        "mov x2, #4",
        "lsl x2, x2, x3", // line size in bytes
        "add x1, x0, x1", // end
        "sub x3, x2, #1",
        "bic x0, x0, x3", // first line
        "1: cmp x0, x1",
        "b.hs 2f",
        "dc cvac, x0",
        "add x0, x0, x2",
        "b 1b",
        "2: dsb ish",
        "ret",
    )
}

/// Exactly what Linux's `__kvm_tlb_flush_vmid_ipa` (arch/arm64/kvm/hyp/nvhe/tlb.c) issues:
/// `dsb ishst`, switch to the VM's VTTBR (+ `isb`), `tlbi ipas2e1is, ipa >> 12`, `dsb ish`,
/// `tlbi vmalle1is`, `dsb ish`, `isb`.
// Safe because the routine only writes VTTBR_EL2 (no guest runs) and invalidates TLBs.
#[unsafe(naked)]
#[no_mangle]
#[link_section = ".text.stagehand_kvm_tlb_flush_vmid_ipa"]
pub extern "C" fn stagehand_kvm_tlb_flush_vmid_ipa(vttbr: u64, ipa: u64) {
    naked_asm!(
        "dsb ishst",
        "mrs x2, vttbr_el2",
        "cmp x2, x0",
        "b.eq 1f",
        "msr vttbr_el2, x0",
        "isb",
        "1: lsr x1, x1, #12",
        "tlbi ipas2e1is, x1",
        "dsb ish",
        "tlbi vmalle1is",
        "dsb ish",
        "isb",
        "ret",
    )
}

/// [`stagehand_dcache_clean_range`] for a PA range.
pub fn dcache_clean_range(pa: usize, len: usize) {
    stagehand_dcache_clean_range(pa as u64, len as u64);
}
