//! Hardware self-test of the AArch64 EL2 image on QEMU.
#![no_std]
#![no_main]

extern crate alloc;

mod s2;

use stagehand_image_aarch64::guest::{self, Access, GuestMode};
use stagehand_image_aarch64::layout::{GUEST_WINDOW, STUB_FRAME, STUB_IPA};
use stagehand_image_aarch64::{boot, el2, println};

#[no_mangle]
extern "C" fn stagehand_main() -> u32 {
    println!("entry EL {}", boot::entry_el());
    let mut b = s2::Builder::new();
    let root = b.root(1);
    b.map_page(root, STUB_IPA, STUB_FRAME, s2::RO);
    b.map_page(root, 0x1000, GUEST_WINDOW.start + 0x3000, s2::RW);
    let vtcr = el2::make_vtcr(32, 1, el2::ps());
    let vttbr = el2::make_vttbr(root as u64, 1);
    for mode in [GuestMode::MmuOff, GuestMode::Identity] {
        let o = guest::guest_access(vtcr, vttbr, 0x1010, Access::Load, mode);
        println!("{mode:?}: {o:x?}");
        let o = guest::guest_access(vtcr, vttbr, 0x2010, Access::Load, mode);
        println!("{mode:?}: {o:x?}");
    }
    0
}
