//! What `page-table-generic` 0.9.1 with `ax-cpu` 0.10.3's `Stage2Pte` does where the harness
//! cannot ask it: its protections are read, write and execute, with no "no access". These
//! tests drive the crates directly (their own tables in host memory, a flush that does
//! nothing), run under qemu-user (`cargo xtask qemu-user`), and pin the crates' behaviour:
//! when a fixed version changes it, they fail, and the README's findings table needs updating.
#![cfg(target_arch = "aarch64")]

use ax_cpu::paging::{MappingFlags, Stage2Pte};
use page_table_generic::{FrameAllocator, PageTable, PagingError, PhysAddr, TableMeta, VirtAddr};
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// axvm's configuration, as the adapter's; the flush does nothing (no TLB to keep here).
#[derive(Clone, Copy)]
struct S2;

impl TableMeta for S2 {
    type P = Stage2Pte;
    const PAGE_SIZE: usize = 4096;
    const LEVEL_BITS: &[usize] = &[9, 9, 9];
    const MAX_BLOCK_LEVEL: usize = 2;
    const STRICT_ADDRESS_WIDTH: bool = true;
    fn flush(_: Option<VirtAddr>) {}
}

/// Frames from the host heap; a frame's address is its pointer.
#[derive(Clone, Copy)]
struct Heap;

const FRAME: Layout = match Layout::from_size_align(4096, 4096) {
    Ok(l) => l,
    Err(_) => panic!("4 KiB, 4 KiB aligned"),
};

impl FrameAllocator for Heap {
    fn alloc_frame(&self) -> Option<PhysAddr> {
        // Safe because the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(FRAME) };
        (!p.is_null()).then(|| PhysAddr::from_usize(p as usize))
    }
    fn dealloc_frame(&self, frame: PhysAddr) {
        // Safe because every frame came from `alloc_frame` with this layout.
        unsafe { dealloc(frame.as_usize() as *mut u8, FRAME) };
    }
    fn phys_to_virt(&self, paddr: PhysAddr) -> *mut u8 {
        paddr.as_usize() as *mut u8
    }
}

const IPA: usize = 0x20_0000;
const FRAME_PA: usize = 0x4400_0000;

fn rw() -> MappingFlags {
    MappingFlags::READ | MappingFlags::WRITE
}

fn at(ipa: usize) -> VirtAddr {
    VirtAddr::from_usize(ipa)
}

/// A protect to no access drops the output address: `Stage2Pte::new_page` with no flags is
/// the all-zero descriptor, so `protect_region(.., MappingFlags::empty())` unmaps the page,
/// and a later protect back to read-write skips it as not mapped: the mapping is lost, not
/// made inaccessible.
#[test]
fn a_protect_to_no_access_unmaps_and_loses_the_output_address() {
    let mut t = PageTable::<S2, Heap>::new(Heap).expect("a root table");
    t.map_page(at(IPA), PhysAddr::from_usize(FRAME_PA), 4096, rw()).expect("mapped");
    assert_eq!(t.query(at(IPA)).map(|q| q.0.as_usize()).ok(), Some(FRAME_PA));

    t.protect_region(at(IPA), 4096, MappingFlags::empty()).expect("protected");
    let q = t.query(at(IPA));
    assert!(
        matches!(q, Err(PagingError::NotMapped)),
        "a no-access protect now keeps the page ({:?}): update the README's findings",
        q.map(|q| q.0.as_usize())
    );

    // Protecting it back finds nothing to protect: the output address is gone.
    t.protect_region(at(IPA), 4096, rw()).expect("protected");
    assert!(matches!(t.query(at(IPA)), Err(PagingError::NotMapped)));
}

/// The same for a 2 MiB block: the whole block's descriptor becomes zero.
#[test]
fn a_protect_to_no_access_of_a_block_unmaps_the_whole_block() {
    let mut t = PageTable::<S2, Heap>::new(Heap).expect("a root table");
    t.map_linear_pages(at(IPA), PhysAddr::from_usize(FRAME_PA), 2 << 20, rw(), true).expect("mapped");
    assert_eq!(t.query(at(IPA)).map(|q| q.2).ok(), Some(2 << 20), "a block");
    t.protect_region(at(IPA), 2 << 20, MappingFlags::empty()).expect("protected");
    for off in [0, 0x1000, (2 << 20) - 0x1000] {
        assert!(matches!(t.query(at(IPA + off)), Err(PagingError::NotMapped)));
    }
}
