//! Recovering from Hyp exceptions and panics: [`try_run`].
//!
//! `stagehand_try_call` is a setjmp: it pushes the callee-saved registers and the previous
//! catch frame, records SP in `CATCH_SP`, and calls the closure. A Hyp exception (vector
//! path `stagehand_hyp_fault`) or a panic (the `#[panic_handler]`) calls
//! `stagehand_longjmp`, which resets SP to the catch frame and returns from
//! `stagehand_try_call` with a non-zero code. Frames in between are abandoned: no
//! destructors run (their heap memory is reclaimed by [`crate::heap::reset`]). Catch frames
//! nest; with none active a Hyp exception or panic prints a report and exits.

use crate::semihosting;
use crate::sync::RacyCell;
use core::arch::global_asm;
use core::fmt::{self, Write};
use core::panic::PanicInfo;

/// Exit status for a Hyp exception outside [`try_run`].
pub const EXIT_UNCAUGHT_HYP_EXCEPTION: u32 = 2;
/// Exit status for a panic outside [`try_run`].
pub const EXIT_UNCAUGHT_PANIC: u32 = 101;

const CODE_HYP_EXCEPTION: u32 = 1;
const CODE_PANIC: u32 = 2;

/// Registers captured by the Hyp vector path (layout shared with the asm below).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypFault {
    /// Vector index: HVBAR offset / 4 (1 undef, 2 SVC, 3 prefetch abort, 4 data abort,
    /// 5 HVC in Hyp, 6 IRQ in Hyp, 7 FIQ, 0 unused).
    pub vector: u32,
    /// HSR (EC in bits 31:26: 0x00 unknown/undef, 0x25 data abort from Hyp, ...).
    pub hsr: u32,
    /// ELR_hyp: the faulting instruction (preferred return address).
    pub elr: u32,
    /// SPSR_hyp: CPSR at the fault.
    pub spsr: u32,
    /// HDFAR: faulting data address.
    pub hdfar: u32,
    /// HIFAR: faulting instruction address.
    pub hifar: u32,
}

impl HypFault {
    /// Name of [`HypFault::vector`].
    pub fn vector_name(&self) -> &'static str {
        match self.vector {
            1 => "undefined instruction",
            2 => "SVC",
            3 => "prefetch abort",
            4 => "data abort",
            5 => "HVC/trap",
            6 => "IRQ",
            7 => "FIQ",
            _ => "unused vector",
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

    /// The message alone, without the location: what `std` hands a panic hook as payload,
    /// so traces recorded here and natively agree.
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
    /// A synchronous exception (or unexpected interrupt) taken in Hyp mode.
    HypException(HypFault),
    /// A Rust panic.
    Panic(PanicMessage),
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Abort::HypException(h) => {
                write!(
                    f,
                    "Hyp {} (HSR=0x{:08x} ELR=0x{:08x} SPSR=0x{:08x} HDFAR=0x{:08x} HIFAR=0x{:08x})",
                    h.vector_name(),
                    h.hsr,
                    h.elr,
                    h.spsr,
                    h.hdfar,
                    h.hifar
                )
            }
            Abort::Panic(m) => write!(f, "panic: {}", m.as_str()),
        }
    }
}

/// SP of the innermost catch frame, 0 when no `try_run` is active.
static CATCH_SP: RacyCell<usize> = RacyCell::new(0);
/// Written by the Hyp vector path before it longjmps.
static LAST_FAULT: RacyCell<HypFault> =
    RacyCell::new(HypFault { vector: 0, hsr: 0, elr: 0, spsr: 0, hdfar: 0, hifar: 0 });
static LAST_PANIC: RacyCell<PanicMessage> = RacyCell::new(PanicMessage::EMPTY);
/// Set while the panic handler formats, to stop a panic inside it from recursing.
static IN_PANIC: RacyCell<bool> = RacyCell::new(false);

global_asm!(
    ".pushsection .text.stagehand_recovery, \"ax\"",
    ".arm",
    ".arch_extension virt",
    // u32 stagehand_try_call(void (*f)(void *), void *arg): 0 when f returned.
    ".global stagehand_try_call",
    ".type stagehand_try_call, %function",
    "stagehand_try_call:",
    "    push {{r4-r12, lr}}",
    "    ldr r2, ={catch_sp}",
    "    ldr r3, [r2]",
    "    push {{r2, r3}}",          // catch frame: [&CATCH_SP, previous CATCH_SP]
    "    str sp, [r2]",
    "    mov r2, r0",
    "    mov r0, r1",
    "    blx r2",
    "    pop {{r2, r3}}",
    "    str r3, [r2]",             // unlink this frame
    "    mov r0, #0",
    "    pop {{r4-r12, pc}}",
    ".size stagehand_try_call, . - stagehand_try_call",
    // noreturn stagehand_longjmp(u32 code): return `code` from the innermost try_call.
    ".global stagehand_longjmp",
    ".type stagehand_longjmp, %function",
    "stagehand_longjmp:",
    "    ldr r2, ={catch_sp}",
    "    ldr r1, [r2]",
    "    cmp r1, #0",
    "    beq 1f",
    "    mov sp, r1",
    "    pop {{r2, r3}}",
    "    str r3, [r2]",
    "    pop {{r4-r12, pc}}",
    "1:  ldr sp, =__stack_top",     // no catch frame: report on a fresh stack
    "    b {uncaught}",
    ".size stagehand_longjmp, . - stagehand_longjmp",
    // Hyp exception from the vector table, r0 = vector index. Never returns to the
    // faulting code, so every register is scratch.
    ".global stagehand_hyp_fault",
    ".type stagehand_hyp_fault, %function",
    "stagehand_hyp_fault:",
    "    ldr r1, ={fault}",
    "    str r0, [r1, #0]",
    "    mrc p15, 4, r2, c5, c2, 0", // HSR
    "    str r2, [r1, #4]",
    "    mrs r2, elr_hyp",
    "    str r2, [r1, #8]",
    "    mrs r2, spsr",
    "    str r2, [r1, #12]",
    "    mrc p15, 4, r2, c6, c0, 0", // HDFAR
    "    str r2, [r1, #16]",
    "    mrc p15, 4, r2, c6, c0, 2", // HIFAR
    "    str r2, [r1, #20]",
    "    mov r0, #{code_hyp}",
    "    b stagehand_longjmp",
    ".size stagehand_hyp_fault, . - stagehand_hyp_fault",
    ".ltorg",
    ".popsection",
    catch_sp = sym CATCH_SP,
    fault = sym LAST_FAULT,
    uncaught = sym uncaught,
    code_hyp = const CODE_HYP_EXCEPTION,
);

extern "C" {
    fn stagehand_try_call(f: extern "C" fn(*mut u8), arg: *mut u8) -> u32;
    fn stagehand_longjmp(code: u32) -> !;
}

/// Reached by `stagehand_longjmp` when no `try_run` is active.
extern "C" fn uncaught(code: u32) -> ! {
    crate::watchdog::disarm();
    if code == CODE_PANIC {
        println!("stagehand: panic: {}", LAST_PANIC.load().as_str());
        semihosting::exit(EXIT_UNCAUGHT_PANIC);
    }
    println!("stagehand: uncaught {}", Abort::HypException(LAST_FAULT.load()));
    semihosting::exit(EXIT_UNCAUGHT_HYP_EXCEPTION)
}

/// Runs `f`, turning a Hyp exception or panic inside it into `Err`. The machine state is
/// as `f` left it (stage-2 registers, timer disarmed, heap not reset); frames of `f` are
/// abandoned without running destructors.
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
            Err(Abort::HypException(LAST_FAULT.load()))
        }
    }
}

/// Whether a [`try_run`] is active (a panic or Hyp exception would be caught).
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
