//! This repository's AArch64 EL2 image over `page-table-generic` with ax-cpu's `Stage2Pte`:
//! the crate's flush executes its own `tlbi alle1is` at EL2.
#![no_std]
#![no_main]

stagehand_image_aarch64::image_main!(target_page_table_generic::PageTableGeneric);
