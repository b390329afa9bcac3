//! This repository's ARMv7 Hyp-mode image: stagehand-image's runner over `kvm-arm-2012`.
#![no_std]
#![no_main]

stagehand_image::image_main!(target_kvm_arm_2012::KvmArm2012);
