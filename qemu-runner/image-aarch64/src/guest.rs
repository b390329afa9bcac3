//! Real guest accesses: one 32-bit load or store at an IPA, performed by a guest at EL1h
//! entered with ERET from EL2, through the stage-2 tables of the VTCR/VTTBR passed in.
//!
//! The guest runs the stub in the stub page ([`crate::stub`]) at IPA [`STUB_IPA`], which
//! every VM must map read-only and executable ([`REQUIRED_STAGE2_MAPPINGS`]). Guest
//! registers on entry: x0 = 0 load / 1 store, x1 = address (VA = IPA in both
//! [`GuestMode`]s), x2 = value. The stub exits with `hvc #0` (loaded value in w2) or
//! `hvc #1` (stored); each guest vector is `hvc #0x10 + n`, so any guest exception comes
//! back as [`GuestOutcome::GuestException`]. Stage-2 aborts trap to EL2 directly
//! (VBAR_EL2 + 0x400); a guest that never traps is stopped by the [`crate::watchdog`]
//! timer (VBAR_EL2 + 0x480).

use crate::fault::{decode_fsc, FaultClass};
use crate::layout::{STUB_FRAME, STUB_IPA};
use crate::stub::{self, HVC_GUEST_VECTOR, S1_BLOCKS, S1_TABLE_IPA, STUB_ENTRY};
pub use crate::stub::{install_stub, GuestMode, StubKind};
use crate::sync::RacyCell;
use crate::{el2, watchdog};
use core::arch::global_asm;

/// HVC immediate of a completed load.
pub const HVC_LOADED: u64 = 0;
/// HVC immediate of a completed store.
pub const HVC_STORED: u64 = 1;

/// ESR_EL2 exception class: HVC from AArch64.
pub const EC_HVC64: u64 = 0x16;
/// ESR_EL2 exception class: instruction abort from a lower EL (stage 2 for the guest).
pub const EC_IABT_LOWER: u64 = 0x20;
/// ESR_EL2 exception class: data abort from a lower EL (stage 2 for the guest).
pub const EC_DABT_LOWER: u64 = 0x24;
/// ESR_EL2 exception class: data abort taken at EL2.
pub const EC_DABT_EL2: u64 = 0x25;

/// Default watchdog budget per access, µs (an access takes a few µs on QEMU; the margin
/// absorbs host scheduling delays since CNTPCT follows the host clock).
pub const DEFAULT_BUDGET_US: u32 = 20_000;

/// What every VM's stage 2 must map, read-only executable normal memory, for the guest to
/// run: (IPA, PA). It holds the vectors, the code and the stage-1 table.
pub const REQUIRED_STAGE2_MAPPINGS: [(u64, usize); 1] = [(STUB_IPA, STUB_FRAME)];

/// Largest IPA + 1 a guest access can reach in [`GuestMode::Identity`] (stage-1 map size).
pub const IDENTITY_IPA_LIMIT: u64 = S1_BLOCKS << 30;

/// One guest access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `ldr w2, [x1]`.
    Load,
    /// `str w2, [x1]` of this value.
    Store(u32),
}

/// What one guest access did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestOutcome {
    /// The load completed with this value.
    Loaded(u32),
    /// The store completed.
    Stored,
    /// A data abort (ESR_EL2 EC 0x24) or instruction abort (EC 0x20) taken to EL2: a
    /// stage-2 fault, on the access, the stub fetch, or the guest's stage-1 walk.
    Stage2Abort {
        /// Faulting IPA: HPFAR_EL2's page plus FAR_EL2's page offset; for a fault on the
        /// stage-1 walk (`s1ptw`), the descriptor's IPA in the identity table.
        ipa: u64,
        /// Lookup level from the fault status code.
        level: u8,
        /// Fault class from the fault status code.
        kind: FaultClass,
        /// ESR ISS bit 7: the fault happened on the guest's stage-1 table walk.
        s1ptw: bool,
        /// Instruction abort (EC 0x20) rather than data abort.
        instruction: bool,
        /// ESR ISS bit 6 (WnR): a data abort caused by a write.
        write: bool,
        /// ESR_EL2.
        esr: u64,
        /// FAR_EL2: the guest VA (of the access, or the PC for an instruction abort).
        far: u64,
        /// HPFAR_EL2 as read (IPA[47:12] in bits 43:4).
        hpfar: u64,
    },
    /// The guest took exception `vector` (VBAR_EL1 offset / 0x80: 4 synchronous, 5 IRQ,
    /// 6 FIQ, 7 SError from EL1h) in its own vectors.
    GuestException {
        /// Guest vector index.
        vector: u64,
        /// ESR_EL1: the syndrome of the guest's exception.
        esr: u64,
    },
    /// The guest did not trap back within the watchdog budget.
    Timeout,
    /// Any other exit to EL2 while the access ran: a synchronous exception with an
    /// unexpected EC or HVC immediate, an interrupt other than the watchdog (then `esr`
    /// holds GICC_IAR), FIQ, SError, or an AArch32 vector.
    El2Exception {
        /// VBAR_EL2 offset / 0x80 (8 synchronous, 9 IRQ, 10 FIQ, 11 SError, 12-15 AArch32).
        vector: u64,
        /// ESR_EL2 (GICC_IAR for an unexpected IRQ).
        esr: u64,
        /// ELR_EL2: guest PC.
        elr: u64,
        /// FAR_EL2.
        far: u64,
    },
}

/// IPA of the page HPFAR_EL2 reports (FIPA, bits 43:4 = IPA[51:12] on v8.0 hardware with
/// up to 48-bit IPAs).
pub const fn hpfar_ipa(hpfar: u64) -> u64 {
    ((hpfar >> 4) & ((1 << 40) - 1)) << 12
}

/// Registers saved by `stagehand_guest_exit` (layout shared with the asm).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawExit {
    vector: u64,
    esr: u64,
    elr: u64,
    spsr: u64,
    far: u64,
    hpfar: u64,
    x2: u64,
}

const VECTOR_LOWER_SYNC: u64 = 8;
const VECTOR_LOWER_IRQ: u64 = 9;

static EXIT: RacyCell<RawExit> =
    RacyCell::new(RawExit { vector: 0, esr: 0, elr: 0, spsr: 0, far: 0, hpfar: 0, x2: 0 });
/// EL2 SP while a guest runs (0 otherwise).
static GUEST_SP: RacyCell<usize> = RacyCell::new(0);
static BUDGET_TICKS: RacyCell<u32> = RacyCell::new(0);

global_asm!(
    ".pushsection .text.stagehand_guest_entry, \"ax\"",
    // void stagehand_guest_enter(op, address, value, entry): ERET into the guest; returns
    // when the guest comes back through stagehand_guest_exit (EXIT holds the details).
    ".global stagehand_guest_enter",
    ".type stagehand_guest_enter, %function",
    "stagehand_guest_enter:",
    "    sub sp, sp, #96",
    "    stp x19, x20, [sp, #0]",
    "    stp x21, x22, [sp, #16]",
    "    stp x23, x24, [sp, #32]",
    "    stp x25, x26, [sp, #48]",
    "    stp x27, x28, [sp, #64]",
    "    stp x29, x30, [sp, #80]",
    "    adrp x4, {guest_sp}",
    "    add x4, x4, :lo12:{guest_sp}",
    "    mov x5, sp",
    "    str x5, [x4]",
    "    msr elr_el2, x3",
    "    mov x4, #{spsr}",
    "    msr spsr_el2, x4",
    "    eret",
    ".size stagehand_guest_enter, . - stagehand_guest_enter",
    // Branched to from VBAR_EL2 + 0x400.. with x0 = vector index; x2 is the guest's.
    ".global stagehand_guest_exit",
    ".type stagehand_guest_exit, %function",
    "stagehand_guest_exit:",
    "    adrp x1, {exit}",
    "    add x1, x1, :lo12:{exit}",
    "    str x0, [x1, #0]",
    "    mrs x0, esr_el2",
    "    str x0, [x1, #8]",
    "    mrs x0, elr_el2",
    "    str x0, [x1, #16]",
    "    mrs x0, spsr_el2",
    "    str x0, [x1, #24]",
    "    mrs x0, far_el2",
    "    str x0, [x1, #32]",
    "    mrs x0, hpfar_el2",
    "    str x0, [x1, #40]",
    "    str x2, [x1, #48]",
    "    adrp x1, {guest_sp}",
    "    add x1, x1, :lo12:{guest_sp}",
    "    ldr x0, [x1]",
    "    mov sp, x0",
    "    str xzr, [x1]",
    "    ldp x19, x20, [sp, #0]",
    "    ldp x21, x22, [sp, #16]",
    "    ldp x23, x24, [sp, #32]",
    "    ldp x25, x26, [sp, #48]",
    "    ldp x27, x28, [sp, #64]",
    "    ldp x29, x30, [sp, #80]",
    "    add sp, sp, #96",
    "    ret",
    ".size stagehand_guest_exit, . - stagehand_guest_exit",
    ".popsection",
    guest_sp = sym GUEST_SP,
    exit = sym EXIT,
    spsr = const stub::GUEST_SPSR,
);

extern "C" {
    fn stagehand_guest_enter(op: u64, address: u64, value: u64, entry: u64);
}

/// Sets up the stub page and the guest's EL1 registers ([`stub::init`]) and the default
/// watchdog budget. Called once by boot.
pub fn init() {
    stub::init();
    set_budget_ticks(watchdog::us_to_ticks(DEFAULT_BUDGET_US));
}

/// Sets the watchdog budget per guest access, in counter ticks (1..=[`watchdog::MAX_TICKS`]).
pub fn set_budget_ticks(ticks: u32) {
    BUDGET_TICKS.store(ticks.clamp(1, watchdog::MAX_TICKS));
}

/// The watchdog budget per guest access, in counter ticks.
pub fn budget_ticks() -> u32 {
    BUDGET_TICKS.load()
}

/// Performs ONE 32-bit guest access at `ipa` in `mode`, with stage 2 configured by `vtcr`
/// and `vttbr` (each written only if it differs from the current value: on QEMU 7.2 a
/// VTCR write or a VMID change flushes the EL1&0 TLBs). Leaves VTCR/VTTBR set.
///
/// `ipa` should be 4-byte aligned (the guest faults at stage 1 otherwise) and, in
/// [`GuestMode::Identity`], below [`IDENTITY_IPA_LIMIT`] (else the guest takes a stage-1
/// translation fault: `GuestException { vector: 4, .. }`).
pub fn guest_access(vtcr: u64, vttbr: u64, ipa: u64, access: Access, mode: GuestMode) -> GuestOutcome {
    if el2::vtcr() != vtcr {
        el2::write_vtcr(vtcr);
    }
    if el2::vttbr() != vttbr {
        el2::write_vttbr(vttbr);
    }
    stub::set_mode(mode);
    let (op, value) = match access {
        Access::Load => (0, 0),
        Access::Store(v) => (1, u64::from(v)),
    };
    watchdog::arm(budget_ticks());
    // Safe because stagehand_guest_enter returns like a normal call (the exit path
    // restores SP and callee-saved registers), and the guest can only reach memory that
    // stage 2 maps for it, never EL2's state.
    unsafe { stagehand_guest_enter(op, ipa, value, STUB_ENTRY) };
    let exit = EXIT.load();
    // Acknowledge before disarming: disarming drops the timer's level-triggered line, after
    // which GICC_IAR reads spurious.
    let iar = if exit.vector == VECTOR_LOWER_IRQ { watchdog::ack_irq() } else { watchdog::SPURIOUS_IRQ };
    watchdog::disarm();
    decode(exit, iar)
}

fn decode(e: RawExit, iar: u32) -> GuestOutcome {
    let other = |esr| GuestOutcome::El2Exception { vector: e.vector, esr, elr: e.elr, far: e.far };
    match e.vector {
        VECTOR_LOWER_SYNC => match e.esr >> 26 {
            EC_HVC64 => match e.esr & 0xffff {
                HVC_LOADED => GuestOutcome::Loaded(e.x2 as u32),
                HVC_STORED => GuestOutcome::Stored,
                imm @ HVC_GUEST_VECTOR..=0x1f => {
                    GuestOutcome::GuestException { vector: imm - HVC_GUEST_VECTOR, esr: stub::esr_el1() }
                }
                _ => other(e.esr),
            },
            ec @ (EC_DABT_LOWER | EC_IABT_LOWER) => {
                let (kind, level) = decode_fsc(e.esr & 0x3f);
                let s1ptw = e.esr & (1 << 7) != 0;
                let page = hpfar_ipa(e.hpfar);
                let ipa = if !s1ptw {
                    page | (e.far & 0xfff)
                } else {
                    // The identity walk reads one level-1 descriptor per 1 GiB of VA.
                    let desc = S1_TABLE_IPA + ((e.far >> 30) % S1_BLOCKS) * 8;
                    if desc & !0xfff == page {
                        desc
                    } else {
                        page
                    }
                };
                GuestOutcome::Stage2Abort {
                    ipa,
                    level,
                    kind,
                    s1ptw,
                    instruction: ec == EC_IABT_LOWER,
                    write: ec == EC_DABT_LOWER && e.esr & (1 << 6) != 0,
                    esr: e.esr,
                    far: e.far,
                    hpfar: e.hpfar,
                }
            }
            _ => other(e.esr),
        },
        VECTOR_LOWER_IRQ => {
            let id = iar & 0x3ff;
            if id != watchdog::SPURIOUS_IRQ {
                watchdog::end_irq(iar);
            }
            if id == watchdog::HYP_TIMER_IRQ {
                GuestOutcome::Timeout
            } else {
                other(u64::from(iar))
            }
        }
        _ => other(e.esr),
    }
}
