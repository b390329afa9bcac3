//! EL2 control: HCR_EL2, the stage-2 registers VTCR_EL2 / VTTBR_EL2, and reads of the
//! identification registers. EL2 runs with its own MMU off (SCTLR_EL2.M = 0, VA = PA).

use core::arch::asm;

/// HCR_EL2.VM: stage 2 on for the EL1&0 regime.
pub const HCR_VM: u64 = 1 << 0;
/// HCR_EL2.SWIO: set/way invalidation by EL1 becomes clean + invalidate.
pub const HCR_SWIO: u64 = 1 << 1;
/// HCR_EL2.FMO: physical FIQs go to EL2.
pub const HCR_FMO: u64 = 1 << 3;
/// HCR_EL2.IMO: physical IRQs go to EL2 (the watchdog timer), whatever the guest's PSTATE.I.
pub const HCR_IMO: u64 = 1 << 4;
/// HCR_EL2.AMO: SErrors go to EL2.
pub const HCR_AMO: u64 = 1 << 5;
/// HCR_EL2.RW: EL1 is AArch64.
pub const HCR_RW: u64 = 1 << 31;
/// What [`init`] programs: stage 2 on, EL1 AArch64, interrupts and SErrors routed to EL2.
pub const HCR_GUEST: u64 = HCR_VM | HCR_SWIO | HCR_FMO | HCR_IMO | HCR_AMO | HCR_RW;

/// SCTLR_EL2 RES1 bits (ARMv8.0, HCR_EL2.E2H = 0); with M, A, C, WXN, EE clear.
const SCTLR_EL2_RES1: u64 = 0x30c5_0830;
/// SCTLR_EL2.I: instruction cache on.
const SCTLR_EL2_I: u64 = 1 << 12;

/// Physical address size code (VTCR_EL2.PS / ID_AA64MMFR0_EL1.PARange) for 40 bits.
pub const PS_40_BITS: u64 = 0b010;

/// ID_AA64MMFR0_EL1 (PARange in bits 3:0; 0b0100 = 44 bits on QEMU's cortex-a57).
pub fn id_aa64mmfr0() -> u64 {
    let v: u64;
    // Safe because reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) v, options(nomem, nostack)) };
    v
}

/// VTCR_EL2.PS to use: the implemented PA size (PARange), capped at 48 bits (0b101).
pub fn ps() -> u64 {
    (id_aa64mmfr0() & 0xf).min(0b101)
}

/// VTCR_EL2 for a 4 KiB granule with input size 64 - `t0sz` bits and walks starting at
/// level 2 - `sl0`: T0SZ | SL0 << 6 | IRGN0 WBWA << 8 | ORGN0 WBWA << 10 | SH0 inner << 12 |
/// PS << 16 | RES1 bit 31. `ps` is [`ps`] (or [`PS_40_BITS`]).
pub const fn make_vtcr(t0sz: u64, sl0: u64, ps: u64) -> u64 {
    (1 << 31) | (ps << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (sl0 << 6) | t0sz
}

/// Builds a VTTBR_EL2 value: root table PA (aligned to the root's size) and 8-bit VMID.
pub const fn make_vttbr(root_pa: u64, vmid: u8) -> u64 {
    (root_pa & 0x0000_ffff_ffff_fffe) | ((vmid as u64) << 48)
}

/// VMID field of a VTTBR_EL2 value.
pub const fn vttbr_vmid(vttbr: u64) -> u8 {
    (vttbr >> 48) as u8
}

/// The exception level the CPU runs at (CurrentEL[3:2]).
pub fn current_el() -> u64 {
    let v: u64;
    // Safe because reading CurrentEL has no side effects.
    unsafe { asm!("mrs {}, CurrentEL", out(reg) v, options(nomem, nostack)) };
    (v >> 2) & 3
}

/// Puts EL2 into a known state: SCTLR_EL2 (MMU and alignment checks off, little-endian),
/// HCR_EL2 = [`HCR_GUEST`], VTTBR_EL2 = 0, CNTVOFF_EL2 = 0, then invalidates every EL1&0
/// and EL2 TLB entry.
pub fn init() {
    // Safe because these are EL2 system registers; with no guest running, changing them
    // only affects future guest entries (EL2's own MMU stays off).
    unsafe {
        asm!(
            "msr sctlr_el2, {sctlr}",
            "isb",
            "msr hcr_el2, {hcr}",
            "msr vttbr_el2, xzr",
            "msr cntvoff_el2, xzr",
            "isb",
            "tlbi alle1is",
            "tlbi alle2is",
            "dsb ish",
            "isb",
            sctlr = in(reg) SCTLR_EL2_RES1 | SCTLR_EL2_I,
            hcr = in(reg) HCR_GUEST,
            options(nostack),
        );
    }
}

/// Current HCR_EL2.
pub fn hcr() -> u64 {
    let v: u64;
    // Safe because reading HCR_EL2 has no side effects.
    unsafe { asm!("mrs {}, hcr_el2", out(reg) v, options(nomem, nostack)) };
    v
}

/// Current VTCR_EL2.
pub fn vtcr() -> u64 {
    let v: u64;
    // Safe because reading VTCR_EL2 has no side effects.
    unsafe { asm!("mrs {}, vtcr_el2", out(reg) v, options(nomem, nostack)) };
    v
}

/// Writes VTCR_EL2 (+ ISB). QEMU 7.2 does not flush any TLB entry on a VTCR write, not
/// even when the value changes (see NOTES.md): changing VTCR under live entries needs a
/// TLBI, as the architecture says.
pub fn write_vtcr(value: u64) {
    // Safe because no guest is running; the next guest entry uses the new configuration.
    unsafe { asm!("msr vtcr_el2, {}", "isb", in(reg) value, options(nostack)) };
}

/// Current VTTBR_EL2.
pub fn vttbr() -> u64 {
    let v: u64;
    // Safe because reading VTTBR_EL2 has no side effects.
    unsafe { asm!("mrs {}, vttbr_el2", out(reg) v, options(nomem, nostack)) };
    v
}

/// Writes VTTBR_EL2 (+ ISB). QEMU 7.2 flushes all EL1&0 TLB entries when the VMID field
/// changes (not when only the root changes); see NOTES.md.
pub fn write_vttbr(value: u64) {
    // Safe because no guest is running; the next guest entry uses the new tables.
    unsafe { asm!("msr vttbr_el2, {}", "isb", in(reg) value, options(nostack)) };
}

/// Smallest data cache line (CTR_EL0.DminLine), bytes.
pub fn dcache_line_size() -> usize {
    let ctr: u64;
    // Safe because reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    4 << ((ctr >> 16) & 0xf)
}
