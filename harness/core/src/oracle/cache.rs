//! The cache-protocol oracle (non-coherent walker): the walker reads descriptors from the
//! point of coherency, so every line of a VM's tables written by the CPU (a descriptor
//! write, or the zeroing of a new page) must be cleaned before the guest runs.
//!
//! From the architecture: the 64-byte line granule of DC CVAC and the PoC semantics of a
//! walker whose VTCR.IRGN0/ORGN0 are non-cacheable. From the target: its writes and cleans.

use crate::arch::{Pa, PAGE_SIZE};
use crate::layout::Layout;
use crate::pool::Page;
use crate::violation::Detail;
use alloc::vec::Vec;

/// Bytes of a cache line.
pub const LINE: u64 = 64;

/// The line at `offset` of page `p` was written at op `op`; `dirty_pages` lists pages with
/// dirty lines.
pub fn written(p: &mut Page, i: usize, offset: u64, op: u32, dirty_pages: &mut Vec<u32>) {
    if p.dirty == 0 {
        p.dirty_since = op;
        dirty_pages.push(i as u32);
    }
    p.dirty |= 1 << (offset / LINE);
}

/// `[pa, pa + len)` was cleaned to the PoC.
pub fn cleaned(pages: &mut [Page], layout: &Layout, pa: Pa, len: u64) {
    let mut line = pa.0 & !(LINE - 1);
    while line < pa.0.saturating_add(len) {
        if let Some(i) = layout.pool_index(Pa(line)) {
            pages[i].dirty &= !(1 << ((line & (PAGE_SIZE - 1)) / LINE));
        }
        line += LINE;
    }
}

/// `vm` is about to run: the first table line of it still dirty, if any (all of its dirty
/// lines are then forgiven, so one omission gives one finding).
pub fn guest_runs(pages: &mut [Page], layout: &Layout, dirty_pages: &[u32], vm: u8) -> Option<Detail> {
    let mut found = None;
    for &i in dirty_pages {
        let p = &mut pages[i as usize];
        if p.allocated && p.table && p.vm == vm && p.dirty != 0 {
            let line = layout.pool_page(i as usize).add(u64::from(p.dirty.trailing_zeros()) * LINE);
            found.get_or_insert(Detail::DcacheNotCleaned { vm, line, written_at: p.dirty_since });
            p.dirty = 0;
        }
    }
    found
}
