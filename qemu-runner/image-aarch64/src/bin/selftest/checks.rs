//! Numbered PASS/FAIL lines and the helpers every check group uses.

use core::fmt;
use stagehand_image_aarch64::fault::FaultClass;
use stagehand_image_aarch64::guest::{self, Access, GuestMode, GuestOutcome};
use stagehand_image_aarch64::println;

/// The running tally.
pub struct Checks {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
}

impl Checks {
    /// Records and prints one numbered check.
    pub fn check(&mut self, name: &str, ok: bool, detail: fmt::Arguments<'_>) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        let n = self.passed + self.failed;
        println!("{} {n:2} {name}: {detail}", if ok { "PASS" } else { "FAIL" });
    }
}

/// A VM: its stage-2 configuration as the registers take it.
#[derive(Clone, Copy, Debug)]
pub struct Vm {
    /// VTCR_EL2.
    pub vtcr: u64,
    /// VTTBR_EL2 (root | VMID << 48).
    pub vttbr: u64,
}

impl Vm {
    /// A guest load at `ipa`.
    pub fn load(&self, ipa: u64, mode: GuestMode) -> GuestOutcome {
        guest::guest_access(self.vtcr, self.vttbr, ipa, Access::Load, mode)
    }

    /// A guest store of `value` at `ipa`.
    pub fn store(&self, ipa: u64, value: u32, mode: GuestMode) -> GuestOutcome {
        guest::guest_access(self.vtcr, self.vttbr, ipa, Access::Store(value), mode)
    }
}

/// Short name of a guest mode for check names.
pub fn mode_name(mode: GuestMode) -> &'static str {
    match mode {
        GuestMode::MmuOff => "mmu-off",
        GuestMode::Identity => "identity-s1",
    }
}

/// Whether `o` is a data-side stage-2 abort of `kind` at `level` for exactly `ipa`.
pub fn is_data_abort(o: &GuestOutcome, kind: FaultClass, level: u8, ipa: u64, write: bool) -> bool {
    matches!(*o, GuestOutcome::Stage2Abort { ipa: i, level: l, kind: k, s1ptw: false,
        instruction: false, write: w, far, .. }
        if i == ipa && l == level && k == kind && w == write && far == ipa)
}

/// Reads a word of RAM (a signature window) from EL2.
pub fn peek(pa: usize) -> u32 {
    // Safe because callers pass aligned addresses in the guest or device window (RAM).
    unsafe { (pa as *const u32).read_volatile() }
}
