//! The image's runner over `kvm-arm-2012` (see `stagehand_image::runner`), with a batch
//! built into the image for boards.
#![no_std]
#![no_main]

/// A batch built into the image (board images); empty for QEMU, which loads one instead.
static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/embedded.bin"));

#[no_mangle]
extern "C" fn stagehand_main() -> u32 {
    stagehand_image::runner::run_batch::<target_kvm_arm_2012::KvmArm2012>(EMBEDDED)
}
