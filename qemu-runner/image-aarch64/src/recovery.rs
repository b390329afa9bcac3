//! Recovering from EL2 exceptions and panics: [`try_run`].
//!
//! `stagehand_try_call` is a setjmp: it saves the callee-saved registers (x19-x30, d8-d15)
//! and the previous catch frame on the stack, records SP in `CATCH_SP`, and calls the
//! closure. An EL2 exception (vector path `stagehand_el2_fault`, which ERETs into the
//! longjmp so PSTATE is restored cleanly) or a panic (the `#[panic_handler]`) runs
//! `stagehand_longjmp`, which resets SP to the catch frame and returns from
//! `stagehand_try_call` with a non-zero code. Frames in between are abandoned: no
//! destructors run (their heap memory is reclaimed by [`crate::heap::reset`]). Catch frames
//! nest; with none active an EL2 exception or panic prints a report and exits.

use crate::semihosting;
use crate::sync::RacyCell;
use core::arch::global_asm;
use core::fmt::{self, Write};
use core::panic::PanicInfo;

/// Exit status for an EL2 exception outside [`try_run`].
pub const EXIT_UNCAUGHT_EL2_EXCEPTION: u32 = 2;
/// Exit status for a panic outside [`try_run`].
pub const EXIT_UNCAUGHT_PANIC: u32 = 101;

const CODE_EL2_EXCEPTION: u64 = 1;
const CODE_PANIC: u64 = 2;

/// Registers captured by the EL2 vector path (layout shared with the asm below).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El2Fault {
    /// VBAR_EL2 offset / 0x80: 4 sync, 5 IRQ, 6 FIQ, 7 SError (current EL, SP_EL2);
    /// 0-3 the same with SP_EL0 (never used).
    pub vector: u64,
    /// ESR_EL2 (EC in bits 31:26: 0x25 data abort at EL2, 0x21 instruction abort, 0 UDF).
    pub esr: u64,
    /// ELR_EL2: the faulting instruction (preferred return address).
    pub elr: u64,
    /// FAR_EL2: faulting address (aborts only).
    pub far: u64,
    /// SPSR_EL2: PSTATE at the fault.
    pub spsr: u64,
}

impl El2Fault {
    /// Name of [`El2Fault::vector`].
    pub fn vector_name(&self) -> &'static str {
        match self.vector {
            4 => "synchronous exception",
            5 => "IRQ",
            6 => "FIQ",
            7 => "SError",
            _ => "exception on SP_EL0",
        }
    }
}

/// Capacity of [`PanicMessage`]; longer messages are truncated.
pub const PANIC_MESSAGE_CAPACITY: usize = 512;

/// A panic's message and location, copied out of the panic handler (no heap needed).
#[derive(Clone, Copy)]
pub struct PanicMessage {
    buf: [u8; PANIC_MESSAGE_CAPACITY],
    len: usize,
    /// Where the message proper starts, after the location.
    message_at: usize,
}

impl PanicMessage {
    const EMPTY: Self = Self { buf: [0; PANIC_MESSAGE_CAPACITY], len: 0, message_at: 0 };

    /// The message alone, without the location (what `std` hands a panic hook).
    pub fn message(&self) -> &str {
        self.as_str().get(self.message_at..).unwrap_or("")
    }

    /// The text ("file:line:col: message"), truncated at a character boundary.
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl Write for PanicMessage {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(PANIC_MESSAGE_CAPACITY - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl fmt::Debug for PanicMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Why [`try_run`] did not return normally.
#[derive(Clone, Copy, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "the message is stored inline: it must survive heap exhaustion and heap::reset"
)]
pub enum Abort {
    /// A synchronous exception (or unexpected interrupt) taken at EL2.
    El2Exception(El2Fault),
    /// A Rust panic.
    Panic(PanicMessage),
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Abort::El2Exception(e) => write!(
                f,
                "EL2 {} (ESR=0x{:08x} ELR=0x{:x} FAR=0x{:x} SPSR=0x{:x})",
                e.vector_name(),
                e.esr,
                e.elr,
                e.far,
                e.spsr
            ),
            Abort::Panic(m) => write!(f, "panic: {}", m.as_str()),
        }
    }
}

/// SP of the innermost catch frame, 0 when no `try_run` is active.
static CATCH_SP: RacyCell<usize> = RacyCell::new(0);
/// Written by the EL2 vector path before it longjmps.
static LAST_FAULT: RacyCell<El2Fault> =
    RacyCell::new(El2Fault { vector: 0, esr: 0, elr: 0, far: 0, spsr: 0 });
static LAST_PANIC: RacyCell<PanicMessage> = RacyCell::new(PanicMessage::EMPTY);
/// Set while the panic handler formats, to stop a panic inside it from recursing.
static IN_PANIC: RacyCell<bool> = RacyCell::new(false);

global_asm!(
    ".pushsection .text.stagehand_recovery, \"ax\"",
    // u64 stagehand_try_call(void (*f)(void *), void *arg): 0 when f returned.
    // Frame: x19-x30 at 0..96, d8-d15 at 96..160, previous CATCH_SP at 160.
    ".global stagehand_try_call",
    ".type stagehand_try_call, %function",
    "stagehand_try_call:",
    "    sub sp, sp, #176",
    "    stp x19, x20, [sp, #0]",
    "    stp x21, x22, [sp, #16]",
    "    stp x23, x24, [sp, #32]",
    "    stp x25, x26, [sp, #48]",
    "    stp x27, x28, [sp, #64]",
    "    stp x29, x30, [sp, #80]",
    "    stp d8, d9, [sp, #96]",
    "    stp d10, d11, [sp, #112]",
    "    stp d12, d13, [sp, #128]",
    "    stp d14, d15, [sp, #144]",
    "    adrp x2, {catch_sp}",
    "    add x2, x2, :lo12:{catch_sp}",
    "    ldr x3, [x2]",
    "    str x3, [sp, #160]",
    "    mov x4, sp",
    "    str x4, [x2]",
    "    mov x2, x0",
    "    mov x0, x1",
    "    blr x2",
    "    mov x0, #0",
    // Common return, x0 = code, sp = this frame: unlink it and restore.
    "stagehand_catch_return:",
    "    adrp x2, {catch_sp}",
    "    add x2, x2, :lo12:{catch_sp}",
    "    ldr x3, [sp, #160]",
    "    str x3, [x2]",
    "    ldp x19, x20, [sp, #0]",
    "    ldp x21, x22, [sp, #16]",
    "    ldp x23, x24, [sp, #32]",
    "    ldp x25, x26, [sp, #48]",
    "    ldp x27, x28, [sp, #64]",
    "    ldp x29, x30, [sp, #80]",
    "    ldp d8, d9, [sp, #96]",
    "    ldp d10, d11, [sp, #112]",
    "    ldp d12, d13, [sp, #128]",
    "    ldp d14, d15, [sp, #144]",
    "    add sp, sp, #176",
    "    ret",
    ".size stagehand_try_call, . - stagehand_try_call",
    // noreturn stagehand_longjmp(u64 code): return `code` from the innermost try_call.
    ".global stagehand_longjmp",
    ".type stagehand_longjmp, %function",
    "stagehand_longjmp:",
    "    adrp x2, {catch_sp}",
    "    add x2, x2, :lo12:{catch_sp}",
    "    ldr x1, [x2]",
    "    cbz x1, 1f",
    "    mov sp, x1",
    "    b stagehand_catch_return",
    "1:  adrp x1, __stack_top",     // no catch frame: report on a fresh stack
    "    add x1, x1, :lo12:__stack_top",
    "    mov sp, x1",
    "    b {uncaught}",
    ".size stagehand_longjmp, . - stagehand_longjmp",
    // EL2 exception from the vector table, x0 = vector index. Never returns to the
    // faulting code, so every register is scratch. ERETs into stagehand_longjmp at EL2h
    // with DAIF masked, which ends the exception cleanly.
    ".global stagehand_el2_fault",
    ".type stagehand_el2_fault, %function",
    "stagehand_el2_fault:",
    "    adrp x1, {fault}",
    "    add x1, x1, :lo12:{fault}",
    "    str x0, [x1, #0]",
    "    mrs x2, esr_el2",
    "    str x2, [x1, #8]",
    "    mrs x2, elr_el2",
    "    str x2, [x1, #16]",
    "    mrs x2, far_el2",
    "    str x2, [x1, #24]",
    "    mrs x2, spsr_el2",
    "    str x2, [x1, #32]",
    "    adr x2, stagehand_longjmp",
    "    msr elr_el2, x2",
    "    mov x2, #0x3c9",
    "    msr spsr_el2, x2",
    "    mov x0, #{code_el2}",
    "    eret",
    ".size stagehand_el2_fault, . - stagehand_el2_fault",
    ".popsection",
    catch_sp = sym CATCH_SP,
    fault = sym LAST_FAULT,
    uncaught = sym uncaught,
    code_el2 = const CODE_EL2_EXCEPTION,
);

extern "C" {
    fn stagehand_try_call(f: extern "C" fn(*mut u8), arg: *mut u8) -> u64;
    fn stagehand_longjmp(code: u64) -> !;
}

/// Reached by `stagehand_longjmp` when no `try_run` is active.
extern "C" fn uncaught(code: u64) -> ! {
    crate::watchdog::disarm();
    if code == CODE_PANIC {
        println!("stagehand: panic: {}", LAST_PANIC.load().as_str());
        semihosting::exit(EXIT_UNCAUGHT_PANIC);
    }
    println!("stagehand: uncaught {}", Abort::El2Exception(LAST_FAULT.load()));
    semihosting::exit(EXIT_UNCAUGHT_EL2_EXCEPTION)
}

/// Runs `f`, turning an EL2 exception or panic inside it into `Err`. The machine state is
/// as `f` left it (stage-2 registers, heap not reset; the timer is disarmed); frames of
/// `f` are abandoned without running destructors.
#[allow(clippy::result_large_err, reason = "see Abort")]
pub fn try_run<R, F: FnOnce() -> R>(f: F) -> Result<R, Abort> {
    struct Slot<F, R> {
        f: Option<F>,
        result: Option<R>,
    }

    extern "C" fn trampoline<R, F: FnOnce() -> R>(slot: *mut u8) {
        // Safe because `slot` is the `&mut Slot<F, R>` passed by try_run, live for the call.
        let slot = unsafe { &mut *slot.cast::<Slot<F, R>>() };
        if let Some(f) = slot.f.take() {
            slot.result = Some(f());
        }
    }

    let mut slot = Slot { f: Some(f), result: None };
    // Safe because stagehand_try_call calls trampoline with our slot and returns exactly
    // once, with callee-saved registers and SP as on entry (the longjmp restores them).
    let code = unsafe { stagehand_try_call(trampoline::<R, F>, (&mut slot as *mut Slot<F, R>).cast()) };
    match (code, slot.result.take()) {
        (0, Some(result)) => Ok(result),
        (CODE_PANIC, _) => {
            crate::watchdog::disarm();
            Err(Abort::Panic(LAST_PANIC.load()))
        }
        _ => {
            crate::watchdog::disarm();
            Err(Abort::El2Exception(LAST_FAULT.load()))
        }
    }
}

/// Whether a [`try_run`] is active (a panic or EL2 exception would be caught).
pub fn catching() -> bool {
    CATCH_SP.load() != 0
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if IN_PANIC.load() {
        // Panicked while formatting a panic: report nothing more, just stop.
        semihosting::exit(EXIT_UNCAUGHT_PANIC);
    }
    IN_PANIC.store(true);
    let mut msg = PanicMessage::EMPTY;
    if let Some(loc) = info.location() {
        let _ = write!(msg, "{}:{}:{}: ", loc.file(), loc.line(), loc.column());
    }
    msg.message_at = msg.len;
    let _ = write!(msg, "{}", info.message());
    LAST_PANIC.store(msg);
    IN_PANIC.store(false);
    // Safe because stagehand_longjmp either unwinds to a live catch frame or reports and
    // exits on a fresh stack.
    unsafe { stagehand_longjmp(CODE_PANIC) }
}
