//! Guest watchdog: the EL2 physical timer (CNTHP_*_EL2) raises PPI 10 (INTID 26) through
//! QEMU virt's GICv2; with HCR_EL2.IMO the IRQ leaves a guest that never traps back at
//! VBAR_EL2 + 0x480, and [`crate::guest`] turns it into `GuestOutcome::Timeout`. Also the
//! counter used for measurements.

use crate::layout::{GICC_BASE, GICD_BASE};
use core::arch::asm;

/// GIC interrupt ID of the EL2 physical timer on QEMU virt (PPI 10).
pub const HYP_TIMER_IRQ: u32 = 26;
/// GICC_IAR value meaning "nothing pending".
pub const SPURIOUS_IRQ: u32 = 1023;

const GICD_CTLR: usize = 0x000;
const GICD_ISENABLER0: usize = 0x100;
const GICD_IPRIORITYR: usize = 0x400;
const GICC_CTLR: usize = 0x00;
const GICC_PMR: usize = 0x04;
const GICC_IAR: usize = 0x0c;
const GICC_EOIR: usize = 0x10;

fn write(base: usize, offset: usize, value: u32) {
    // Safe because callers pass GIC MMIO registers and EL2's MMU is off.
    unsafe { ((base + offset) as *mut u32).write_volatile(value) }
}

fn read(base: usize, offset: usize) -> u32 {
    // Safe because callers pass GIC MMIO registers and EL2's MMU is off.
    unsafe { ((base + offset) as *const u32).read_volatile() }
}

/// Enables the distributor and CPU interface with only the EL2 timer PPI enabled
/// (priority 0x80, mask 0xff). EL2 itself keeps PSTATE.I set: the IRQ is only taken while
/// a guest runs.
pub fn init_gic() {
    let prio_reg = GICD_IPRIORITYR + (HYP_TIMER_IRQ as usize & !3);
    let shift = (HYP_TIMER_IRQ % 4) * 8;
    let prio = read(GICD_BASE, prio_reg) & !(0xff << shift);
    write(GICD_BASE, prio_reg, prio | (0x80 << shift));
    write(GICD_BASE, GICD_ISENABLER0, 1 << HYP_TIMER_IRQ);
    write(GICD_BASE, GICD_CTLR, 1);
    write(GICC_BASE, GICC_PMR, 0xff);
    write(GICC_BASE, GICC_CTLR, 1);
    disarm();
}

/// Largest budget [`arm`] accepts: CNTHP_TVAL_EL2 is a signed 32-bit down-counter.
pub const MAX_TICKS: u32 = i32::MAX as u32;

/// Starts the EL2 timer: it fires `ticks` (at most [`MAX_TICKS`]) counter ticks from now.
pub fn arm(ticks: u32) {
    let ticks = u64::from(ticks.min(MAX_TICKS));
    // Safe because CNTHP_TVAL/CTL only control the EL2 timer's interrupt.
    unsafe {
        asm!("msr cnthp_tval_el2, {}", "msr cnthp_ctl_el2, {}", "isb",
             in(reg) ticks, in(reg) 1u64, options(nomem, nostack));
    }
}

/// Stops the EL2 timer, which also drops its (level-triggered) interrupt line.
pub fn disarm() {
    // Safe because CNTHP_CTL only controls the EL2 timer's interrupt.
    unsafe { asm!("msr cnthp_ctl_el2, xzr", "isb", options(nomem, nostack)) };
}

/// Acknowledges the highest-priority pending interrupt: returns GICC_IAR (ID in bits 9:0,
/// [`SPURIOUS_IRQ`] if none). Pass the value to [`end_irq`] unless it is spurious.
pub fn ack_irq() -> u32 {
    read(GICC_BASE, GICC_IAR)
}

/// Signals end of interrupt for a value returned by [`ack_irq`].
pub fn end_irq(iar: u32) {
    write(GICC_BASE, GICC_EOIR, iar);
}

/// Counter frequency in Hz (CNTFRQ_EL0; 62.5 MHz on QEMU 7.2 virt).
pub fn counter_freq() -> u64 {
    let v: u64;
    // Safe because reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Reads the physical counter (CNTPCT_EL0). On QEMU it follows the host clock (no icount),
/// so tick differences measure wall time.
pub fn counter() -> u64 {
    let v: u64;
    // Safe because reading CNTPCT has no side effects; the ISB keeps it from being read early.
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Converts counter ticks to nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(counter_freq().max(1))) as u64
}

/// Converts microseconds to counter ticks (saturating at [`MAX_TICKS`]).
pub fn us_to_ticks(us: u32) -> u32 {
    (u64::from(us) * counter_freq() / 1_000_000).min(u64::from(MAX_TICKS)) as u32
}
