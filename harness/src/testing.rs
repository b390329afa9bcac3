//! The harness's unit tests run sequences of this repository's two targets: they register
//! them as a program would (the crates are dev-dependencies only).

use crate::targets::{register as add, Entry};

static KVM_ARM_2012: Entry = Entry::of::<target_kvm_arm_2012::KvmArm2012>(&target_kvm_arm_2012::INFO);
static AARCH64_PAGING: Entry =
    Entry::of::<target_aarch64_paging::Aarch64Paging>(&target_aarch64_paging::INFO);

/// Registers both, in the repository's order (idempotent).
pub fn register() {
    add(&[&KVM_ARM_2012, &AARCH64_PAGING]).expect("the built-in targets register");
}
