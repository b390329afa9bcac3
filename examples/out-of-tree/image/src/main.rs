//! tiny-s2's QEMU image: Stagehand's EL2 runner over the tiny-s2 adapter.
#![no_std]
#![no_main]
stagehand_image_aarch64::image_main!(tiny_s2_stagehand::TinyS2);
