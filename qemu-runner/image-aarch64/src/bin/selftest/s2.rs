//! A throwaway stage-2 table builder over the POOL (VMSAv8-64, 4 KiB granule), enough for
//! the self-test: page and 2 MiB block mappings under a level-1 root (optionally made of
//! concatenated tables). The real table code is the code under test, not this.

use stagehand_image_aarch64::layout::{PAGE_SIZE, POOL};
use stagehand_image_aarch64::tlb;

/// Table descriptor (levels 1-2) / page descriptor (level 3) type bits.
pub const TABLE: u64 = 0b11;
/// Level-3 page type bits.
pub const PAGE: u64 = 0b11;
/// Level-1/2 block type bits.
pub const BLOCK: u64 = 0b01;
/// Access flag.
pub const AF: u64 = 1 << 10;
/// Inner shareable.
pub const SH_INNER: u64 = 0b11 << 8;
/// S2AP read-only.
pub const S2AP_RO: u64 = 0b01 << 6;
/// S2AP read/write.
pub const S2AP_RW: u64 = 0b11 << 6;
/// MemAttr normal, outer and inner write-back.
pub const NORMAL_WB: u64 = 0b1111 << 2;
/// MemAttr Device-nGnRE.
pub const DEVICE_NGNRE: u64 = 0b0001 << 2;
/// Output address bits 47:12.
pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Normal write-back read/write leaf attributes (add [`PAGE`] or [`BLOCK`]).
pub const RW: u64 = AF | SH_INNER | S2AP_RW | NORMAL_WB;
/// Normal write-back read-only leaf attributes.
pub const RO: u64 = AF | SH_INNER | S2AP_RO | NORMAL_WB;

/// Bump allocator of zeroed pool pages, and the walk that fills tables in.
pub struct Builder {
    next: usize,
}

/// A descriptor's address in the pool.
pub type Desc = *mut u64;

impl Builder {
    /// Starts at the beginning of the pool.
    pub fn new() -> Self {
        Self { next: POOL.start }
    }

    /// Pool pages handed out so far.
    pub fn pages_used(&self) -> usize {
        (self.next - POOL.start) / PAGE_SIZE
    }

    fn alloc(&mut self, pages: usize) -> usize {
        let align = pages * PAGE_SIZE;
        let pa = (self.next + align - 1) & !(align - 1);
        self.next = pa + pages * PAGE_SIZE;
        assert!(self.next <= POOL.end, "self-test pool exhausted");
        for w in (pa..self.next).step_by(8) {
            // Safe because the range is POOL memory owned by this builder.
            unsafe { (w as *mut u64).write_volatile(0) };
        }
        tlb::dcache_clean_range(pa, pages * PAGE_SIZE);
        pa
    }

    /// An empty level-1 root of `pages` concatenated tables (aligned to its size).
    pub fn root(&mut self, pages: usize) -> usize {
        self.alloc(pages)
    }

    fn next_table(&mut self, desc: Desc) -> usize {
        // Safe because `desc` points at a descriptor inside a table this builder made.
        let d = unsafe { desc.read_volatile() };
        if d & 0b11 == TABLE {
            return (d & ADDR_MASK) as usize;
        }
        let table = self.alloc(1);
        set(desc, table as u64 | TABLE);
        table
    }

    /// The level-1 descriptor for `ipa` in `root` (a concatenated root is contiguous).
    pub fn l1(&self, root: usize, ipa: u64) -> Desc {
        (root + (ipa >> 30) as usize * 8) as Desc
    }

    /// The level-2 descriptor for `ipa`, creating the level-2 table if needed.
    pub fn l2(&mut self, root: usize, ipa: u64) -> Desc {
        let l1 = self.l1(root, ipa);
        (self.next_table(l1) + ((ipa >> 21) & 0x1ff) as usize * 8) as Desc
    }

    /// The level-3 descriptor for `ipa`, creating tables as needed.
    pub fn l3(&mut self, root: usize, ipa: u64) -> Desc {
        let l2 = self.l2(root, ipa);
        (self.next_table(l2) + ((ipa >> 12) & 0x1ff) as usize * 8) as Desc
    }

    /// Maps the 4 KiB page at `ipa` to `pa` with `attrs`; returns the level-3 descriptor.
    pub fn map_page(&mut self, root: usize, ipa: u64, pa: usize, attrs: u64) -> Desc {
        let d = self.l3(root, ipa);
        set(d, pa as u64 | PAGE | attrs);
        d
    }

    /// Maps the 2 MiB block at `ipa` to `pa` (both 2 MiB aligned) with `attrs`.
    pub fn map_block_2m(&mut self, root: usize, ipa: u64, pa: usize, attrs: u64) -> Desc {
        let d = self.l2(root, ipa);
        set(d, pa as u64 | BLOCK | attrs);
        d
    }
}

/// Rewrites a descriptor and cleans it to PoC, deliberately without TLB maintenance.
pub fn set(desc: Desc, value: u64) {
    // Safe because callers pass descriptors of the self-test's own tables.
    unsafe { desc.write_volatile(value) };
    tlb::dcache_clean_range(desc as usize, 8);
}

/// A page leaf for `pa` with `attrs`.
pub const fn page(pa: usize, attrs: u64) -> u64 {
    pa as u64 | PAGE | attrs
}
