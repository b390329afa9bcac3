//! This repository's assembly of targets: `kvm-arm-2012` (the default) and
//! `aarch64-paging`, for its `stagehand` program, its fuzz targets, tests and benchmarks.

use harness::targets::Entry;

/// `kvm-arm-2012`: `mmu`, the Rust port of the 2012 KVM/ARM stage-2 code.
pub static KVM_ARM_2012: Entry = Entry::of::<target_kvm_arm_2012::KvmArm2012>(&target_kvm_arm_2012::INFO);

/// `aarch64-paging`: Google's crate from crates.io, its `Stage2` regime.
#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
pub static AARCH64_PAGING: Entry =
    Entry::of::<target_aarch64_paging::Aarch64Paging>(&target_aarch64_paging::INFO);

/// `aarch64-paging` on AArch64 Linux (qemu-user): the crate executes its own `tlbi
/// ipas2e1is`, which the harness traps and records.
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
pub static AARCH64_PAGING: Entry = Entry::of::<
    harness::native::trap::Trapped<target_aarch64_paging::Aarch64Paging>,
>(&target_aarch64_paging::INFO);

/// `page-table-generic`: axvisor's stage 2 (page-table-generic 0.9.1 with ax-cpu 0.10.3's
/// `Stage2Pte`), which builds for AArch64 only; its flush executes `tlbi alle1is`, trapped.
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
pub static PAGE_TABLE_GENERIC: Entry = Entry::of::<
    harness::native::trap::Trapped<target_page_table_generic::PageTableGeneric>,
>(&target_page_table_generic::INFO);

/// `page-table-generic` elsewhere: known by its description, run under qemu-user by the
/// program built for AArch64 Linux (harness::elsewhere).
#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
pub static PAGE_TABLE_GENERIC: Entry = Entry::elsewhere(&target_page_table_generic::INFO, "aarch64");

/// The built-in targets, in the order of the byte format's target numbering; those that
/// build for AArch64 only come last, so the others keep their numbers everywhere.
#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
pub static TARGETS: &[&Entry] = &[&KVM_ARM_2012, &AARCH64_PAGING, &PAGE_TABLE_GENERIC];

/// The built-in targets (on AArch64 Linux, where every one runs).
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
pub static TARGETS: &[&Entry] = &[&KVM_ARM_2012, &AARCH64_PAGING, &PAGE_TABLE_GENERIC];

/// Registers the built-in targets (for tests and tools that run sequences in-process).
pub fn register() {
    harness::targets::register(TARGETS).expect("the built-in targets register");
}
