//! The self-test's VMs, built by hand in the pool with [`crate::s2::Builder`].

use crate::checks::Vm;
use crate::s2::{self, Builder, Desc};
use stagehand_image_aarch64::el2;
use stagehand_image_aarch64::guest::REQUIRED_STAGE2_MAPPINGS;
use stagehand_image_aarch64::layout::{DEVICE_WINDOW, GUEST_WINDOW, STUB_IPA};

/// Guest-window frame `n` (PA).
pub const fn frame(n: usize) -> usize {
    GUEST_WINDOW.start + n * 4096
}

/// IPAs of the 32-bit VMs.
pub const IPA_A: u64 = 0x1000;
/// Remapped without maintenance by the TLB checks.
pub const IPA_STALE: u64 = 0x3000;
/// Read-only page.
pub const IPA_RO: u64 = 0x4000;
/// Page with AF = 0.
pub const IPA_NO_AF: u64 = 0x5000;
/// Mapped by both VM1 and VM2, to different frames.
pub const IPA_ISO: u64 = 0x7000;
/// 2 MiB block onto the start of the guest window.
pub const IPA_BLOCK: u64 = 0x0020_0000;
/// Stage-2 device page.
pub const IPA_DEVICE: u64 = 0x4000_0000;
/// Unmapped, its level-3 table exists.
pub const IPA_HOLE_L3: u64 = 0x2008;
/// Unmapped, its level-2 table exists (made for IPA_A).
pub const IPA_HOLE_L2: u64 = 0x2000_0010;
/// Unmapped, its level-1 entry is empty.
pub const IPA_HOLE_L1: u64 = 0x8000_0010;

/// Frames the TLB checks flip IPA_STALE between.
pub const FRAME_X: usize = frame(0x10);
/// See [`FRAME_X`].
pub const FRAME_Y: usize = frame(0x11);

/// IPAs of the 40-bit VM (T0SZ 24, two concatenated level-1 tables).
pub const WIDE_IPAS: [(u64, usize); 4] = [
    (0x1000, frame(0x30)),
    (0x10_0000_2000, frame(0x31)),
    (0x80_0000_3000, frame(0x32)),
    (0xff_c000_4000, frame(0x33)),
];
/// Unmapped, in the second concatenated level-1 table.
pub const WIDE_HOLE_L1: u64 = 0x80_4000_0000;
/// IPAs of the 39-bit VM (T0SZ 25, one 512-entry level-1 table).
pub const MID_IPAS: [(u64, usize); 3] =
    [(0x18_0000_6000, frame(0x36)), (0x40_0000_5000, frame(0x34)), (0x7f_ffff_f000, frame(0x35))];

/// Everything the checks use.
pub struct Vms {
    /// 32-bit IPA space (T0SZ 32, SL0 1: level-1 root of 4 entries), VMID 1, all mappings.
    pub vm1: Vm,
    /// VMID 2: same configuration; IPA_ISO and IPA_STALE onto other frames.
    pub vm2: Vm,
    /// VMID 3: empty stage 2.
    pub empty: Vm,
    /// VMID 4: the stub's level-2 entry is missing (its level-2 table exists).
    pub no_stub_l2: Vm,
    /// VMID 7: the stub's level-3 table exists, its entry is missing.
    pub no_stub_l3: Vm,
    /// VMID 5: 40-bit IPA space.
    pub wide: Vm,
    /// VMID 6: 39-bit IPA space.
    pub mid: Vm,
    /// VM1's level-3 descriptor of IPA_STALE.
    pub stale_desc: Desc,
    /// VM1's level-3 descriptor of IPA_ISO.
    pub iso_desc: Desc,
    /// Pool pages used.
    pub pages: usize,
}

fn map_stub(b: &mut Builder, root: usize) {
    for (ipa, pa) in REQUIRED_STAGE2_MAPPINGS {
        b.map_page(root, ipa, pa, s2::RO);
    }
}

/// Builds every VM.
pub fn build() -> Vms {
    let ps = el2::ps();
    let vtcr32 = el2::make_vtcr(32, 1, ps);
    let mut b = Builder::new();

    let root1 = b.root(1);
    map_stub(&mut b, root1);
    b.map_page(root1, IPA_A, frame(3), s2::RW);
    let stale_desc = b.map_page(root1, IPA_STALE, FRAME_X, s2::RW);
    b.map_page(root1, IPA_RO, frame(4), s2::RO);
    b.map_page(root1, IPA_NO_AF, frame(6), s2::RW & !s2::AF);
    let iso_desc = b.map_page(root1, IPA_ISO, frame(0x20), s2::RW);
    b.map_block_2m(root1, IPA_BLOCK, GUEST_WINDOW.start, s2::RW);
    b.map_page(root1, IPA_DEVICE, DEVICE_WINDOW.start + 0x1000, s2::AF | s2::S2AP_RW | s2::DEVICE_NGNRE);

    let root2 = b.root(1);
    map_stub(&mut b, root2);
    b.map_page(root2, IPA_ISO, frame(0x21), s2::RW);
    b.map_page(root2, IPA_STALE, frame(0x12), s2::RW);

    let root3 = b.root(1);
    let root4 = b.root(1);
    b.map_page(root4, STUB_IPA + 0x20_0000, frame(8), s2::RO);

    let root7 = b.root(1);
    b.map_page(root7, STUB_IPA + 0x1000, frame(9), s2::RO);
    let root5 = b.root(2);
    map_stub(&mut b, root5);
    for (ipa, pa) in WIDE_IPAS {
        b.map_page(root5, ipa, pa, s2::RW);
    }
    let root6 = b.root(1);
    map_stub(&mut b, root6);
    for (ipa, pa) in MID_IPAS {
        b.map_page(root6, ipa, pa, s2::RW);
    }

    let vm = |vtcr, root: usize, vmid| Vm { vtcr, vttbr: el2::make_vttbr(root as u64, vmid) };
    Vms {
        vm1: vm(vtcr32, root1, 1),
        vm2: vm(vtcr32, root2, 2),
        empty: vm(vtcr32, root3, 3),
        no_stub_l2: vm(vtcr32, root4, 4),
        no_stub_l3: vm(vtcr32, root7, 7),
        wide: vm(el2::make_vtcr(24, 1, ps), root5, 5),
        mid: vm(el2::make_vtcr(25, 1, ps), root6, 6),
        stale_desc,
        iso_desc,
        pages: b.pages_used(),
    }
}
