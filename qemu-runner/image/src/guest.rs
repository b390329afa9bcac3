//! Real guest accesses: one 32-bit load or store at an IPA, performed by a guest in NS
//! PL1 (SVC) entered with ERET from Hyp, through the stage-2 tables in VTTBR.
//!
//! The guest runs with its own LPAE stage 1, because without it a guest reaches only
//! IPA < 4 GiB. Its level-1 table (4 × 1 GiB blocks at [`STUB_S1_TABLE_OFFSET`] in
//! [`STUB_FRAME`], walked through stage 2 at IPA [`STUB_TABLE_IPA`] + offset: see there
//! why not at [`STUB_IPA`]) maps:
//! - VA 0..1 GiB → IPA [`STUB_IPA`]: stub code at VA 0, guest vectors at VA 0x100;
//! - VA slot·1 GiB (slot 1..3) → a 1 GiB-aligned IPA region, used LRU as a window cache.
//!
//! An access to IPA `a` uses VA `slot << 30 | (a & (1 GiB - 1))`. When a slot is repointed,
//! a VMID whose TLB may still cache the slot's old region has the guest stub run TLBIMVAA
//! on the VA (+ DSB + ISB) before its access. That happens *only* then, because the
//! invalidation also drops any stale stage-2 information cached for that VA, which is what
//! the harness wants to observe (on QEMU 7.2 it leaves other VAs' stale entries alone:
//! see NOTES.md).
//!
//! Guest registers on entry: r0 = flags ([`FLAG_STORE`], [`FLAG_INVALIDATE`]), r1 = VA,
//! r2 = value to store, r3 = 0. The stub exits with `hvc #0` (loaded value in r2) or
//! `hvc #1` (stored); r3 = 1 tells Hyp the invalidation ran. Each guest vector is
//! `hvc #0x10 + index`, so any guest exception comes back as
//! [`GuestOutcome::GuestException`]. Stage-2 aborts trap to Hyp directly; a guest that
//! never traps is stopped by the [`crate::watchdog`] timer.

use crate::hyp;
use crate::layout::{
    PAGE_SIZE, STUB_CODE_OFFSET, STUB_FRAME, STUB_IPA, STUB_S1_TABLE_OFFSET, STUB_TABLE_IPA,
    STUB_VECTORS_OFFSET,
};
use crate::sync::RacyCell;
use crate::watchdog;
use core::arch::{asm, global_asm};

/// Guest flag: store r2 instead of loading.
pub const FLAG_STORE: u32 = 1 << 0;
/// Guest flag: TLBIMVAA the access VA (+ DSB + ISB) before the access.
pub const FLAG_INVALIDATE: u32 = 1 << 1;

/// HVC immediate of a completed load.
pub const HVC_LOADED: u32 = 0;
/// HVC immediate of a completed store.
pub const HVC_STORED: u32 = 1;
/// HVC immediate of guest vector 0; vector `n` uses `HVC_GUEST_VECTOR + n`.
pub const HVC_GUEST_VECTOR: u32 = 0x10;

/// HSR exception class: HVC.
pub const EC_HVC: u32 = 0x12;
/// HSR exception class: prefetch abort from the guest (routed to Hyp: stage 2).
pub const EC_PABT_GUEST: u32 = 0x20;
/// HSR exception class: prefetch abort taken from Hyp.
pub const EC_PABT_HYP: u32 = 0x21;
/// HSR exception class: data abort from the guest (routed to Hyp: stage 2).
pub const EC_DABT_GUEST: u32 = 0x24;
/// HSR exception class: data abort taken from Hyp.
pub const EC_DABT_HYP: u32 = 0x25;

/// Guest CPSR on entry: SVC mode, A32, IRQ/FIQ/async aborts masked (IRQs still reach Hyp
/// through HCR.IMO).
pub const GUEST_SPSR: u32 = 0x1d3;
/// Guest VA of the stub entry point.
pub const STUB_ENTRY_VA: u32 = STUB_CODE_OFFSET as u32;

/// Default watchdog budget per access, µs (a normal access takes a few µs on QEMU; the
/// margin absorbs host scheduling delays since CNTPCT follows the host clock).
pub const DEFAULT_BUDGET_US: u32 = 20_000;

/// What every VM's stage 2 must map, read-only executable normal memory, for the guest to
/// run: (IPA, PA). It holds the code, the vectors and the stage-1 table.
pub const REQUIRED_STAGE2_MAPPINGS: [(u64, usize); 1] = [(STUB_IPA, STUB_FRAME)];

/// Number of 1 GiB VA slots that window onto IPA regions (VA slot 0 is the stub).
pub const WINDOW_SLOTS: usize = 3;

/// What one guest access did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestOutcome {
    /// The load completed with this value.
    Loaded(u32),
    /// The store completed.
    Stored,
    /// A data abort (HSR EC 0x24) or prefetch abort (EC 0x20) routed to Hyp: a stage-2
    /// fault, including one on the guest's stage-1 walk or on the stub fetch. See
    /// [`GuestOutcome::fault`].
    Stage2Abort {
        /// HSR.
        hsr: u32,
        /// HPFAR: IPA[39:12] in bits 31:4.
        hpfar: u32,
        /// HDFAR: guest VA of a data abort.
        hdfar: u32,
        /// HIFAR: guest VA of a prefetch abort.
        hifar: u32,
        /// The faulting IPA, exact: from the guest VA through the window (HPFAR page +
        /// page offset for a fault on a stage-1 walk). Use this rather than HPFAR, which
        /// qemu-system-arm 7.2 truncates to IPA[31:12] and which ARMv7 leaves UNKNOWN for
        /// stage-2 permission faults not on a walk.
        ipa: u64,
    },
    /// The guest took exception `vector` (guest VBAR offset / 4: 1 undef, 2 SVC,
    /// 3 prefetch abort, 4 data abort, 6 IRQ, 7 FIQ) in its own PL1 vectors.
    GuestException {
        /// Guest vector index.
        vector: u32,
    },
    /// The guest did not trap back within the watchdog budget.
    Timeout,
    /// Any other exit to Hyp: vector 5 (trap) with an unexpected HSR, or vector 6 (IRQ)
    /// other than the watchdog, in which case `hsr` holds GICC_IAR instead.
    HypException {
        /// Hyp vector index (5 trap, 6 IRQ).
        vector: u32,
        /// HSR (or GICC_IAR for vector 6).
        hsr: u32,
        /// ELR_hyp: guest PC.
        elr: u32,
        /// SPSR_hyp: guest CPSR.
        spsr: u32,
    },
}

/// Fault type from a long-descriptor fault status code (HSR ISS DFSC/IFSC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// 0b0000LL.
    AddressSize,
    /// 0b0001LL.
    Translation,
    /// 0b0010LL.
    AccessFlag,
    /// 0b0011LL.
    Permission,
    /// 0b010000: synchronous external abort (e.g. a PA with nothing behind it).
    SyncExternal,
    /// 0b0101LL: synchronous external abort on a table walk.
    SyncExternalOnWalk,
    /// 0b100001.
    Alignment,
    /// Anything else (debug, TLB conflict, parity, lockdown, ...).
    Other,
}

/// Splits a long-descriptor fault status code into kind and level (where it has one).
pub fn decode_fsc(fsc: u32) -> (FaultKind, Option<u8>) {
    let level = Some((fsc & 3) as u8);
    match fsc & 0x3f {
        0b00_0000..=0b00_0011 => (FaultKind::AddressSize, level),
        0b00_0100..=0b00_0111 => (FaultKind::Translation, level),
        0b00_1000..=0b00_1011 => (FaultKind::AccessFlag, level),
        0b00_1100..=0b00_1111 => (FaultKind::Permission, level),
        0b01_0000 => (FaultKind::SyncExternal, None),
        0b01_0100..=0b01_0111 => (FaultKind::SyncExternalOnWalk, level),
        0b10_0001 => (FaultKind::Alignment, None),
        _ => (FaultKind::Other, None),
    }
}

/// HSR exception class (bits 31:26).
pub const fn hsr_ec(hsr: u32) -> u32 {
    hsr >> 26
}

/// IPA of the faulting page from HPFAR (bits 31:4 = IPA[39:12]).
pub const fn hpfar_ipa(hpfar: u32) -> u64 {
    ((hpfar as u64) >> 4) << 12
}

/// A decoded [`GuestOutcome::Stage2Abort`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Fault type.
    pub kind: FaultKind,
    /// Lookup level, for translation / access flag / permission / walk faults.
    pub level: Option<u8>,
    /// Raw DFSC/IFSC.
    pub status: u32,
    /// Prefetch abort (EC 0x20) rather than data abort.
    pub instruction: bool,
    /// Data abort caused by a write (WnR).
    pub write: bool,
    /// The fault happened on the guest's stage-1 table walk (S1PTW).
    pub s1ptw: bool,
    /// The faulting IPA (see [`GuestOutcome::Stage2Abort`]).
    pub ipa: u64,
    /// The IPA page as HPFAR reports it.
    pub hpfar_ipa: u64,
    /// Guest VA (HDFAR or HIFAR).
    pub va: u32,
}

impl GuestOutcome {
    /// Decodes a [`GuestOutcome::Stage2Abort`]; `None` for other outcomes.
    pub fn fault(&self) -> Option<Fault> {
        let GuestOutcome::Stage2Abort { hsr, hpfar, hdfar, hifar, ipa } = *self else {
            return None;
        };
        let instruction = hsr_ec(hsr) == EC_PABT_GUEST;
        let va = if instruction { hifar } else { hdfar };
        let (kind, level) = decode_fsc(hsr & 0x3f);
        Some(Fault {
            kind,
            level,
            status: hsr & 0x3f,
            instruction,
            write: !instruction && hsr & (1 << 6) != 0,
            s1ptw: hsr & (1 << 7) != 0,
            ipa,
            hpfar_ipa: hpfar_ipa(hpfar),
            va,
        })
    }
}

/// Registers saved by `stagehand_guest_exit` (layout shared with the asm).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawExit {
    kind: u32,
    hsr: u32,
    elr: u32,
    spsr: u32,
    hdfar: u32,
    hifar: u32,
    hpfar: u32,
    r2: u32,
    r3: u32,
}

const EXIT_TRAP: u32 = 1;
const EXIT_IRQ: u32 = 2;

static EXIT: RacyCell<RawExit> =
    RacyCell::new(RawExit { kind: 0, hsr: 0, elr: 0, spsr: 0, hdfar: 0, hifar: 0, hpfar: 0, r2: 0, r3: 0 });
/// Hyp SP while a guest runs (0 otherwise).
static GUEST_SP: RacyCell<usize> = RacyCell::new(0);

global_asm!(
    ".pushsection .text.stagehand_guest_entry, \"ax\"",
    ".arm",
    ".arch_extension virt",
    // u32 stagehand_guest_enter(flags, va, value, entry_va): ERET into the guest; returns
    // the exit kind when the guest comes back through stagehand_guest_exit.
    ".global stagehand_guest_enter",
    ".type stagehand_guest_enter, %function",
    "stagehand_guest_enter:",
    "    push {{r4-r12, lr}}",
    "    ldr r4, ={guest_sp}",
    "    str sp, [r4]",
    "    msr elr_hyp, r3",
    "    movw r4, #{spsr}",
    "    msr spsr_fsxc, r4",
    "    mov r3, #0",
    "    eret",
    ".size stagehand_guest_enter, . - stagehand_guest_enter",
    // Jumped to from the Hyp vectors with r0 = exit kind; r2/r3 still hold the guest's.
    ".global stagehand_guest_exit",
    ".type stagehand_guest_exit, %function",
    "stagehand_guest_exit:",
    "    ldr r1, ={exit}",
    "    str r0, [r1, #0]",
    "    mrc p15, 4, r0, c5, c2, 0", // HSR
    "    str r0, [r1, #4]",
    "    mrs r0, elr_hyp",
    "    str r0, [r1, #8]",
    "    mrs r0, spsr",
    "    str r0, [r1, #12]",
    "    mrc p15, 4, r0, c6, c0, 0", // HDFAR
    "    str r0, [r1, #16]",
    "    mrc p15, 4, r0, c6, c0, 2", // HIFAR
    "    str r0, [r1, #20]",
    "    mrc p15, 4, r0, c6, c0, 4", // HPFAR
    "    str r0, [r1, #24]",
    "    str r2, [r1, #28]",
    "    str r3, [r1, #32]",
    "    ldr r1, ={guest_sp}",
    "    ldr sp, [r1]",
    "    mov r0, #0",
    "    str r0, [r1]",
    "    ldr r1, ={exit}",
    "    ldr r0, [r1]",
    "    pop {{r4-r12, pc}}",
    ".size stagehand_guest_exit, . - stagehand_guest_exit",
    ".ltorg",
    ".popsection",
    // The guest stub and vectors: position-independent, copied into STUB_FRAME.
    ".pushsection .text.stagehand_guest_stub, \"ax\"",
    ".arm",
    ".arch_extension virt",
    ".balign 32",
    ".global stagehand_guest_stub",
    ".type stagehand_guest_stub, %function",
    "stagehand_guest_stub:",
    "    tst r0, #{flag_inv}",
    "    beq 1f",
    "    lsr r3, r1, #12",
    "    lsl r3, r3, #12",
    "    mcr p15, 0, r3, c8, c7, 3", // TLBIMVAA: this VA, any ASID, current VMID
    "    dsb sy",
    "    isb",
    "    mov r3, #1",
    "1:  tst r0, #{flag_store}",
    "    bne 2f",
    "    ldr r2, [r1]",
    "    hvc #{hvc_loaded}",
    "    b .",
    "2:  str r2, [r1]",
    "    hvc #{hvc_stored}",
    "    b .",
    ".size stagehand_guest_stub, . - stagehand_guest_stub",
    ".global stagehand_guest_stub_end",
    "stagehand_guest_stub_end:",
    ".balign 32",
    ".global stagehand_guest_vectors",
    ".type stagehand_guest_vectors, %function",
    "stagehand_guest_vectors:",
    "    hvc #0x10",                 // reset (never taken)
    "    hvc #0x11",                 // undefined instruction
    "    hvc #0x12",                 // SVC
    "    hvc #0x13",                 // prefetch abort (stage 1)
    "    hvc #0x14",                 // data abort (stage 1, alignment, ...)
    "    hvc #0x15",                 // not used
    "    hvc #0x16",                 // IRQ
    "    hvc #0x17",                 // FIQ
    ".size stagehand_guest_vectors, . - stagehand_guest_vectors",
    ".global stagehand_guest_vectors_end",
    "stagehand_guest_vectors_end:",
    ".popsection",
    guest_sp = sym GUEST_SP,
    exit = sym EXIT,
    spsr = const GUEST_SPSR,
    flag_inv = const FLAG_INVALIDATE,
    flag_store = const FLAG_STORE,
    hvc_loaded = const HVC_LOADED,
    hvc_stored = const HVC_STORED,
);

extern "C" {
    fn stagehand_guest_enter(flags: u32, va: u32, value: u32, entry_va: u32) -> u32;
    static stagehand_guest_stub: [u32; 0];
    static stagehand_guest_stub_end: [u32; 0];
    static stagehand_guest_vectors: [u32; 0];
    static stagehand_guest_vectors_end: [u32; 0];
}

/// Guest stage-1 level-1 block attributes: valid block, AttrIndx 0 (normal WB), PL1 RW,
/// inner shareable, AF set, global.
const S1_BLOCK: u64 = 0b01 | (0b11 << 8) | (1 << 10);
/// MAIR0: attr0 normal write-back RW-allocate, attr1 device.
const GUEST_MAIR0: u32 = 0x0000_04ff;
/// TTBCR: EAE, T0SZ = 0 (TTBR0 covers 4 GiB, walk starts at level 1), walks write-back
/// inner shareable, EPD1 (no TTBR1 walks).
const GUEST_TTBCR: u32 = (1 << 31) | (1 << 23) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8);
/// SCTLR bits set for the guest: M (stage-1 MMU), C, I.
const GUEST_SCTLR_SET: u32 = (1 << 0) | (1 << 2) | (1 << 12);
/// SCTLR bits cleared: A, V (high vectors), WXN, UWXN, EE, TRE, AFE, TE.
const GUEST_SCTLR_CLEAR: u32 =
    (1 << 1) | (1 << 13) | (1 << 19) | (1 << 20) | (1 << 25) | (1 << 28) | (1 << 29) | (1 << 30);

const NO_REGION: u16 = u16::MAX;

/// Which IPA region each VA slot shows, and which region each VMID's TLB may still cache
/// for each slot.
struct Window {
    slots: [u16; WINDOW_SLOTS],
    last_use: [u32; WINDOW_SLOTS],
    clock: u32,
    seen: [[u16; WINDOW_SLOTS]; 256],
    stats: Stats,
}

/// Counters of window-cache activity since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Guest entries.
    pub accesses: u32,
    /// Times a VA slot was repointed to another IPA region.
    pub slot_switches: u32,
    /// Accesses that made the guest run TLBIMVAA first.
    pub invalidations: u32,
}

static WINDOW: RacyCell<Window> = RacyCell::new(Window {
    slots: [NO_REGION; WINDOW_SLOTS],
    last_use: [0; WINDOW_SLOTS],
    clock: 0,
    seen: [[NO_REGION; WINDOW_SLOTS]; 256],
    stats: Stats { accesses: 0, slot_switches: 0, invalidations: 0 },
});
static BUDGET_TICKS: RacyCell<u32> = RacyCell::new(0);

fn window() -> &'static mut Window {
    // Safe because only this module touches WINDOW, never re-entrantly (no callbacks),
    // and each borrow ends before the next is taken.
    unsafe { &mut *WINDOW.get() }
}

fn s1_entry(index: usize) -> *mut u64 {
    (STUB_FRAME + STUB_S1_TABLE_OFFSET + index * 8) as *mut u64
}

/// Clean + invalidate by PA to PoC (DCCIMVAC) so a cacheable guest view sees Hyp's
/// non-cacheable writes on hardware; then invalidate the I-cache for rewritten code.
fn sync_stub_page() {
    let line = hyp::dcache_line_size();
    for pa in (STUB_FRAME..STUB_FRAME + PAGE_SIZE).step_by(line) {
        // Safe because cache maintenance by PA never loses data in this page (Hyp writes
        // it non-cacheable, so no dirty lines hold newer data).
        unsafe { asm!("mcr p15, 0, {}, c7, c14, 1", in(reg) pa, options(nostack)) };
    }
    // Safe because invalidating the I-cache and branch predictor only costs refetches.
    unsafe {
        asm!("dsb ish", "mcr p15, 0, {0}, c7, c1, 0", "mcr p15, 0, {0}, c7, c1, 6",
             "dsb ish", "isb", in(reg) 0, options(nostack));
    }
}

/// Which code the guest runs from VA 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StubKind {
    /// The access stub.
    Normal,
    /// `b .`: never traps back (exercises the watchdog).
    Spin,
    /// The access stub with its first instruction replaced by this A32 word (e.g. a UDF
    /// to exercise the guest's vectors).
    FirstWord(u32),
}

/// Writes the guest code and vectors into [`STUB_FRAME`] (the stage-1 table is left alone).
pub fn install_stub(kind: StubKind) {
    // Safe because the symbols delimit the stub and vectors in .text, and STUB_FRAME is a
    // page reserved for them (offsets checked below) that no Rust object uses.
    unsafe {
        let copy = |start: *const u32, end: *const u32, offset: usize, limit: usize| {
            let words = (end as usize - start as usize) / 4;
            assert!(offset + words * 4 <= limit, "guest code overflows its slot");
            for i in 0..words {
                ((STUB_FRAME + offset + i * 4) as *mut u32).write_volatile(start.add(i).read());
            }
        };
        copy(
            stagehand_guest_stub.as_ptr(),
            stagehand_guest_stub_end.as_ptr(),
            STUB_CODE_OFFSET,
            STUB_VECTORS_OFFSET,
        );
        copy(
            stagehand_guest_vectors.as_ptr(),
            stagehand_guest_vectors_end.as_ptr(),
            STUB_VECTORS_OFFSET,
            STUB_S1_TABLE_OFFSET,
        );
        let first = match kind {
            StubKind::Normal => None,
            StubKind::Spin => Some(0xeaff_fffe), // b .
            StubKind::FirstWord(word) => Some(word),
        };
        if let Some(word) = first {
            ((STUB_FRAME + STUB_CODE_OFFSET) as *mut u32).write_volatile(word);
        }
    }
    sync_stub_page();
}

/// Sets up the stub page, the guest's stage-1 table and its PL1 system registers, and the
/// default watchdog budget. Called once by boot. The guest registers are not rewritten
/// per access: on QEMU an SCTLR/TTBCR/TTBR0 change flushes the TLB.
pub fn init() {
    install_stub(StubKind::Normal);
    // Safe because the table lives in the reserved STUB_FRAME, 8-byte aligned.
    unsafe {
        s1_entry(0).write_volatile(STUB_IPA | S1_BLOCK);
        for slot in 1..=WINDOW_SLOTS {
            s1_entry(slot).write_volatile(0);
        }
    }
    *window() = Window {
        slots: [NO_REGION; WINDOW_SLOTS],
        last_use: [0; WINDOW_SLOTS],
        clock: 0,
        seen: [[NO_REGION; WINDOW_SLOTS]; 256],
        stats: Stats::default(),
    };
    sync_stub_page();
    let ttbr0 = STUB_TABLE_IPA + STUB_S1_TABLE_OFFSET as u64;
    // Safe because these are the NS PL1 registers of the guest, which is not running.
    unsafe {
        let sctlr: u32;
        asm!("mrc p15, 0, {}, c1, c0, 0", out(reg) sctlr, options(nomem, nostack));
        asm!(
            "mcr p15, 0, {mair0}, c10, c2, 0", // MAIR0
            "mcr p15, 0, {zero}, c10, c2, 1",  // MAIR1
            "mcr p15, 0, {ttbcr}, c2, c0, 2",  // TTBCR
            "mcrr p15, 0, {lo}, {hi}, c2",     // TTBR0 (ASID 0)
            "mcrr p15, 1, {zero}, {zero}, c2", // TTBR1 (unused)
            "mcr p15, 0, {vbar}, c12, c0, 0",  // VBAR
            "mcr p15, 0, {dacr}, c3, c0, 0",   // DACR (ignored with LPAE)
            "isb",
            "mcr p15, 0, {sctlr}, c1, c0, 0",  // SCTLR
            "isb",
            mair0 = in(reg) GUEST_MAIR0,
            zero = in(reg) 0u32,
            ttbcr = in(reg) GUEST_TTBCR,
            lo = in(reg) ttbr0 as u32,
            hi = in(reg) (ttbr0 >> 32) as u32,
            vbar = in(reg) STUB_VECTORS_OFFSET as u32,
            dacr = in(reg) 0x5555_5555u32,
            sctlr = in(reg) (sctlr | GUEST_SCTLR_SET) & !GUEST_SCTLR_CLEAR,
            options(nostack),
        );
    }
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

/// Window-cache counters since boot.
pub fn stats() -> Stats {
    window().stats
}

/// Forgets which regions each VMID's TLB may cache, so every VMID's next access per slot
/// invalidates its window VA first (e.g. when a new sequence starts after a full flush).
pub fn forget_window_tlb_state() {
    window().seen = [[NO_REGION; WINDOW_SLOTS]; 256];
}

/// IPA that guest VA `va` maps to under the current stage-1 table.
pub fn ipa_of_guest_va(va: u32) -> Option<u64> {
    let slot = (va >> 30) as usize;
    let offset = u64::from(va & 0x3fff_ffff);
    if slot == 0 {
        return Some(STUB_IPA + offset);
    }
    match window().slots[slot - 1] {
        NO_REGION => None,
        region => Some((u64::from(region) << 30) | offset),
    }
}

/// Guest VA through which an access to `ipa` goes right now, if its 1 GiB region is
/// currently shown in a window slot (e.g. for TLB maintenance by VA from Hyp).
pub fn window_va(ipa: u64) -> Option<u32> {
    let region = (ipa >> 30) as u16;
    let slot = window().slots.iter().position(|&r| r == region)?;
    Some((((slot + 1) as u32) << 30) | (ipa as u32 & 0x3fff_ffff))
}

/// Points a VA slot at `region` (IPA >> 30), reusing a slot that already shows it or
/// evicting the least recently used one. Returns the slot index (0-based: VA slot + 1).
fn slot_for(region: u16) -> usize {
    let w = window();
    w.clock = w.clock.wrapping_add(1);
    let slot = match w.slots.iter().position(|&r| r == region) {
        Some(slot) => slot,
        None => {
            let slot = (0..WINDOW_SLOTS).min_by_key(|&s| w.last_use[s]).unwrap_or(0);
            w.slots[slot] = region;
            w.stats.slot_switches += 1;
            let entry = s1_entry(slot + 1);
            // Safe because the entry lies in the stage-1 table in STUB_FRAME, no guest is
            // running, and a VMID that cached the old block invalidates it before use.
            unsafe { entry.write_volatile((u64::from(region) << 30) | S1_BLOCK) };
            hyp::dcache_clean_range(entry as usize, 8);
            slot
        }
    };
    w.last_use[slot] = w.clock;
    slot
}

/// Performs ONE 32-bit guest access at `ipa` (< 2^40) with stage 2 from `vttbr`: a load if
/// `write` is `None`, else a store of the value. Leaves VTTBR = `vttbr`.
///
/// Panics if `ipa` is outside the 40-bit IPA space.
pub fn guest_access(vttbr: u64, ipa: u64, write: Option<u32>) -> GuestOutcome {
    assert!(ipa < 1 << crate::layout::IPA_BITS, "IPA {ipa:#x} beyond 40 bits");
    let region = (ipa >> 30) as u16;
    let vmid = usize::from(hyp::vttbr_vmid(vttbr));
    let slot = slot_for(region);
    let mut flags = if write.is_some() { FLAG_STORE } else { 0 };
    if window().seen[vmid][slot] != region {
        flags |= FLAG_INVALIDATE;
    }
    let va = (((slot + 1) as u32) << 30) | (ipa as u32 & 0x3fff_ffff);
    hyp::write_vttbr(vttbr);
    watchdog::arm(budget_ticks());
    // Safe because stagehand_guest_enter returns like a normal call (the exit path
    // restores SP and callee-saved registers), and the guest can only reach memory that
    // stage 2 maps for it, never Hyp's state.
    let kind = unsafe { stagehand_guest_enter(flags, va, write.unwrap_or(0), STUB_ENTRY_VA) };
    let iar = if kind == EXIT_IRQ { watchdog::ack_irq() } else { watchdog::SPURIOUS_IRQ };
    watchdog::disarm();
    let exit = EXIT.load();
    let w = window();
    w.stats.accesses += 1;
    if flags & FLAG_INVALIDATE != 0 && exit.r3 == 1 {
        w.stats.invalidations += 1;
        w.seen[vmid][slot] = region;
    }
    decode(kind, exit, iar)
}

fn decode(kind: u32, e: RawExit, iar: u32) -> GuestOutcome {
    let other = |vector, hsr| GuestOutcome::HypException { vector, hsr, elr: e.elr, spsr: e.spsr };
    match kind {
        EXIT_TRAP => match hsr_ec(e.hsr) {
            EC_HVC => match e.hsr & 0xffff {
                HVC_LOADED => GuestOutcome::Loaded(e.r2),
                HVC_STORED => GuestOutcome::Stored,
                imm @ HVC_GUEST_VECTOR..=0x17 => {
                    GuestOutcome::GuestException { vector: imm - HVC_GUEST_VECTOR }
                }
                _ => other(5, e.hsr),
            },
            ec @ (EC_DABT_GUEST | EC_PABT_GUEST) => {
                let va = if ec == EC_PABT_GUEST { e.hifar } else { e.hdfar };
                let ipa = if e.hsr & (1 << 7) != 0 {
                    // On a stage-1 walk: the walked IPA is below 4 GiB, so HPFAR is whole.
                    hpfar_ipa(e.hpfar)
                } else {
                    ipa_of_guest_va(va).unwrap_or(hpfar_ipa(e.hpfar) | u64::from(va & 0xfff))
                };
                GuestOutcome::Stage2Abort { hsr: e.hsr, hpfar: e.hpfar, hdfar: e.hdfar, hifar: e.hifar, ipa }
            }
            _ => other(5, e.hsr),
        },
        _ => {
            let id = iar & 0x3ff;
            if id != watchdog::SPURIOUS_IRQ {
                watchdog::end_irq(iar);
            }
            if id == watchdog::HYP_TIMER_IRQ {
                GuestOutcome::Timeout
            } else {
                other(6, iar)
            }
        }
    }
}
