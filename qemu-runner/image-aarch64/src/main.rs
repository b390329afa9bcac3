//! The image's runner over `aarch64-paging` (see `stagehand_image_aarch64::runner`).
#![no_std]
#![no_main]

stagehand_image_aarch64::image_main!(target_aarch64_paging::Aarch64Paging);
