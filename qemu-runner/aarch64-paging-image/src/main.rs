//! This repository's AArch64 EL2 image: stagehand-image-aarch64's runner over `aarch64-paging`.
#![no_std]
#![no_main]

stagehand_image_aarch64::image_main!(target_aarch64_paging::Aarch64Paging);
