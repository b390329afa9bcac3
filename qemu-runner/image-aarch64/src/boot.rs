//! Entry point and the EL2 vector table.
//!
//! `_start` (at 0x4008_0000, entered by QEMU at EL2 with the MMU off) samples CurrentEL
//! and CNTPCT, sets SP, zeroes .bss; at EL2 it installs [`stagehand_el2_vectors`] in
//! VBAR_EL2 and clears CPTR_EL2.TFP (the compiler may use FP/SIMD registers); at EL1 it
//! enables FP/SIMD in CPACR_EL1 so the refusal message can be formatted. Then it calls
//! [`stagehand_boot`], which refuses anything but EL2 (exit [`EXIT_NOT_EL2`]),
//! initialises every subsystem and runs the binary's `stagehand_main`.
//!
//! VBAR_EL2 routing (offset / 0x80 = vector index):
//! - 0-7, taken from EL2 itself (0x000-0x380) → `stagehand_el2_fault` in
//!   [`crate::recovery`] (longjmp into `try_run`, or fatal);
//! - 8-15, taken from the guest (0x400-0x780) → `stagehand_guest_exit` in [`crate::guest`]
//!   with the index: 8 synchronous (HVC, stage-2 abort), 9 IRQ (watchdog), the rest
//!   unexpected.

use crate::{el2, guest, heap, layout, semihosting, uart, watchdog};
use core::arch::global_asm;

/// Exit status when QEMU did not enter the image at EL2.
pub const EXIT_NOT_EL2: u32 = 3;

/// CPTR_EL2 with every trap off: RES1 bits 13:12 and 9:0 (E2H = 0), TFP (bit 10) clear.
const CPTR_EL2_NO_TRAPS: u64 = 0x33ff;
/// CPACR_EL1.FPEN = 0b11: no FP/SIMD traps at EL1 (only used when entered at EL1).
const CPACR_EL1_FPEN: u64 = 0b11 << 20;

global_asm!(
    ".pushsection .text.boot, \"ax\"",
    ".global _start",
    ".type _start, %function",
    "_start:",
    "    mrs x19, CurrentEL",
    "    mrs x20, cntpct_el0", // counter at entry, for boot-time measurement
    "    adrp x1, __stack_top",
    "    add x1, x1, :lo12:__stack_top",
    "    mov sp, x1",
    "    adrp x0, __bss_start",
    "    add x0, x0, :lo12:__bss_start",
    "    adrp x1, __bss_end",
    "    add x1, x1, :lo12:__bss_end",
    "1:  cmp x0, x1",
    "    b.hs 2f",
    "    str xzr, [x0], #8",
    "    b 1b",
    "2:  ubfx x0, x19, #2, #2",
    "    cmp x0, #2",
    "    b.ne 3f",
    "    adrp x1, stagehand_el2_vectors",
    "    add x1, x1, :lo12:stagehand_el2_vectors",
    "    msr vbar_el2, x1",
    "    mov x1, #{cptr}",
    "    msr cptr_el2, x1",
    "    isb",
    "    b 4f",
    "3:  cmp x0, #1",
    "    b.ne 4f",             // EL3: FP is not trapped at reset; just report
    "    mov x1, #{cpacr}",
    "    msr cpacr_el1, x1",
    "    isb",
    "4:  mov x0, x19",         // stagehand_boot(CurrentEL, counter at entry)
    "    mov x1, x20",
    "    bl {boot}",
    "    b .",
    ".size _start, . - _start",
    ".popsection",
    cptr = const CPTR_EL2_NO_TRAPS,
    cpacr = const CPACR_EL1_FPEN,
    boot = sym stagehand_boot,
);

global_asm!(
    ".pushsection .text.stagehand_el2_vectors, \"ax\"",
    ".balign 2048", // VBAR_EL2[10:0] are RES0
    ".global stagehand_el2_vectors",
    ".type stagehand_el2_vectors, %function",
    "stagehand_el2_vectors:",
    ".set .Lvector_index, 0",
    ".rept 8", // current EL, SP_EL0 then SP_EL2: EL2's own exceptions
    "    .balign 0x80",
    "    mov x0, #.Lvector_index",
    "    b stagehand_el2_fault",
    "    .set .Lvector_index, .Lvector_index + 1",
    ".endr",
    // Lower EL: the guest. Only x0/x1 may be used before the exit path (x2 is the result).
    ".rept 8",
    "    .balign 0x80",
    "    mov x0, #.Lvector_index",
    "    b stagehand_guest_exit",
    "    .set .Lvector_index, .Lvector_index + 1",
    ".endr",
    ".size stagehand_el2_vectors, . - stagehand_el2_vectors",
    ".popsection",
);

extern "C" {
    /// The test body, defined by the binary; its return value is the exit status.
    fn stagehand_main() -> u32;
    /// The EL2 vector table (2 KiB aligned).
    pub fn stagehand_el2_vectors();
}

/// Counter value (CNTPCT_EL0) when `_start` ran.
static BOOT_COUNTER: crate::sync::RacyCell<u64> = crate::sync::RacyCell::new(0);
/// CurrentEL (raw register value) when `_start` ran.
static ENTRY_EL: crate::sync::RacyCell<u64> = crate::sync::RacyCell::new(0);

/// CNTPCT sampled at the first instructions of `_start` (QEMU's counter starts near 0
/// when the machine starts, so this is also roughly QEMU's start-up cost).
pub fn boot_counter() -> u64 {
    BOOT_COUNTER.load()
}

/// The exception level `_start` was entered at (CurrentEL[3:2]).
pub fn entry_el() -> u64 {
    (ENTRY_EL.load() >> 2) & 3
}

/// Rust entry from `_start`: initialises everything, runs `stagehand_main`, exits.
extern "C" fn stagehand_boot(current_el: u64, boot_counter: u64) -> ! {
    uart::init();
    let el = (current_el >> 2) & 3;
    if el != 2 {
        println!("stagehand: not at EL2 (CurrentEL={el}); run QEMU with -M virt,virtualization=on");
        semihosting::exit(EXIT_NOT_EL2);
    }
    BOOT_COUNTER.store(boot_counter);
    ENTRY_EL.store(current_el);
    // Safe because nothing has allocated yet.
    unsafe { heap::reset() };
    layout::refill_signatures();
    el2::init();
    watchdog::init_gic();
    guest::init();
    // Safe because the binary must define `stagehand_main` with this signature (see the
    // crate documentation); the link fails otherwise.
    let code = unsafe { stagehand_main() };
    semihosting::exit(code)
}
