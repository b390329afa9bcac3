//! Entry point and Hyp vector table.
//!
//! `_start` (at 0x4000_0000, entered by QEMU in Hyp mode) checks the mode, sets up the
//! stack, zeroes .bss, installs [`stagehand_hyp_vectors`] in HVBAR and calls
//! [`stagehand_boot`], which initialises every subsystem and runs the binary's
//! `stagehand_main`.
//!
//! Hyp vector routing (HVBAR + offset):
//! - 0x00, 0x04 undef, 0x08 SVC, 0x0C prefetch abort, 0x10 data abort, 0x1C FIQ: always
//!   taken from Hyp itself → `stagehand_hyp_fault` in [`crate::recovery`] (longjmp into `try_run`, or fatal).
//! - 0x14 Hyp trap and 0x18 IRQ: `stagehand_guest_exit` ([`crate::guest`]) unless SPSR_hyp says we
//!   came from Hyp mode (an HVC or IRQ in Hyp), which is a Hyp exception again.

use crate::{guest, heap, hyp, layout, semihosting, uart, watchdog};
use core::arch::global_asm;

/// CPSR.M value of Hyp mode.
pub const MODE_HYP: u32 = 0x1a;
/// Exit status when QEMU did not enter the image in Hyp mode.
pub const EXIT_NOT_HYP: u32 = 3;

global_asm!(
    ".pushsection .text.boot, \"ax\"",
    ".arm",
    ".global _start",
    ".type _start, %function",
    "_start:",
    "    mrs r4, cpsr",
    "    mrrc p15, 0, r2, r3, c14",  // CNTPCT at entry, for boot-time measurement
    "    ldr sp, =__stack_top",
    "    ldr r0, =__bss_start",
    "    ldr r1, =__bss_end",
    "    mov r5, #0",
    "1:  cmp r0, r1",
    "    strlo r5, [r0], #4",
    "    blo 1b",
    "    and r0, r4, #0x1f",
    "    cmp r0, #0x1a",
    "    bne 2f",                    // not Hyp: report without touching Hyp registers
    "    ldr r1, =stagehand_hyp_vectors",
    "    mcr p15, 4, r1, c12, c0, 0", // HVBAR
    "    isb",
    "2:  mov r0, r4",                // stagehand_boot(cpsr, boot_counter in r2:r3)
    "    bl {boot}",
    "    b .",
    ".size _start, . - _start",
    ".ltorg",
    ".popsection",
    boot = sym stagehand_boot,
);

global_asm!(
    ".pushsection .text.stagehand_hyp_vectors, \"ax\"",
    ".arm",
    ".arch_extension virt",
    ".balign 32", // HVBAR[4:0] are RES0
    ".global stagehand_hyp_vectors",
    ".type stagehand_hyp_vectors, %function",
    "stagehand_hyp_vectors:",
    "    b 10f", // 0x00 not used
    "    b 11f", // 0x04 undefined instruction (from Hyp)
    "    b 12f", // 0x08 SVC (from Hyp; semihosting never gets here)
    "    b 13f", // 0x0C prefetch abort (from Hyp)
    "    b 14f", // 0x10 data abort (from Hyp)
    "    b 15f", // 0x14 Hyp trap: guest HVC / stage-2 abort
    "    b 16f", // 0x18 IRQ: watchdog while a guest runs
    "    b 17f", // 0x1C FIQ
    "10: mov r0, #0",
    "    b stagehand_hyp_fault",
    "11: mov r0, #1",
    "    b stagehand_hyp_fault",
    "12: mov r0, #2",
    "    b stagehand_hyp_fault",
    "13: mov r0, #3",
    "    b stagehand_hyp_fault",
    "14: mov r0, #4",
    "    b stagehand_hyp_fault",
    // Guest registers r2/r3 carry results: only r0/r1 may be used before the exit path.
    "15: mrs r1, spsr",
    "    and r1, r1, #0x1f",
    "    cmp r1, #0x1a",
    "    moveq r0, #5",
    "    beq stagehand_hyp_fault",
    "    mov r0, #1", // guest exit kind: trap
    "    b stagehand_guest_exit",
    "16: mrs r1, spsr",
    "    and r1, r1, #0x1f",
    "    cmp r1, #0x1a",
    "    moveq r0, #6",
    "    beq stagehand_hyp_fault",
    "    mov r0, #2", // guest exit kind: IRQ
    "    b stagehand_guest_exit",
    "17: mov r0, #7",
    "    b stagehand_hyp_fault",
    ".size stagehand_hyp_vectors, . - stagehand_hyp_vectors",
    ".popsection",
);

extern "C" {
    /// The test body, defined by the binary; its return value is the exit status.
    fn stagehand_main() -> u32;
}

/// Counter value (CNTPCT) when `_start` ran.
static BOOT_COUNTER: crate::sync::RacyCell<u64> = crate::sync::RacyCell::new(0);

/// CNTPCT sampled at the first instruction of `_start` (QEMU's counter starts near 0 when
/// the machine starts, so this is also roughly QEMU's start-up cost).
pub fn boot_counter() -> u64 {
    BOOT_COUNTER.load()
}

/// Rust entry from `_start`: initialises everything, runs `stagehand_main`, exits.
extern "C" fn stagehand_boot(cpsr: u32, boot_counter: u64) -> ! {
    uart::init();
    let mode = cpsr & 0x1f;
    if mode != MODE_HYP {
        println!("stagehand: not in Hyp mode (CPSR.M=0x{mode:02x}); run QEMU with -M virt,virtualization=on");
        semihosting::exit(EXIT_NOT_HYP);
    }
    BOOT_COUNTER.store(boot_counter);
    // Safe because nothing has allocated yet.
    unsafe { heap::reset() };
    layout::refill_signatures();
    hyp::init();
    watchdog::init_gic();
    guest::init();
    // Safe because the binary must define `stagehand_main` with this signature (see the
    // crate documentation); the link fails otherwise.
    let code = unsafe { stagehand_main() };
    semihosting::exit(code)
}
