//! The deterministic page pool: the same physical base, size and allocation order in the
//! simulator and in the ARM images, so both sides hand out the same pages. Each page has one
//! record holding the pool's bookkeeping and what the structure and cache oracles track
//! about it, together, so an op touches one cache line per page.

use crate::layout::{Layout, POOL_PAGES};
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// What the harness knows about one pool page.
#[derive(Clone, Copy, Default)]
pub struct Page {
    /// Allocated and not freed.
    pub allocated: bool,
    /// First page of an allocation.
    pub head: bool,
    /// Order of the allocation it belongs to.
    pub order: u8,
    /// Reference count (kernel-like: the head starts at 1).
    pub count: u32,
    /// A table page: a root page of a live VM, or a table linked into one.
    pub table: bool,
    /// Part of a VM's root.
    pub root: bool,
    /// The level of the table it holds, when [`Page::table`].
    pub level: u8,
    /// The VM that allocated or linked it.
    pub vm: u8,
    /// The entry linking this table (0: none).
    pub parent: u64,
    /// First IPA the table translates.
    pub ipa: u64,
    /// Valid entries.
    pub valid: u16,
    /// Valid entries that are leaves (pages or blocks).
    pub leaves: u16,
    /// Dirty 64-byte lines (non-coherent walker mode).
    pub dirty: u64,
    /// The op of the first write since the page was last clean.
    pub dirty_since: u32,
    /// 1 + the op that last touched it (0: never), for per-op refcount checks.
    pub touched_at: u32,
    /// A refcount mismatch was reported and has not been repaired since.
    pub reported: bool,
    /// The content may be nonzero (written, or poisoned). A page known to be zero needs no
    /// zeroing when allocated and no poison when freed.
    pub dirty_content: bool,
}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocFail {
    /// `fail_alloc` asked for it.
    Injected,
    /// No room left.
    Exhausted,
}

/// The pool's allocator state.
pub struct Pool {
    /// One record per page.
    pub pages: Vec<Page>,
    /// Pages at or above this index were never allocated since the last reset.
    pub high: usize,
    /// Freed single pages, most recently freed last (reused first, like the kernel's hot
    /// pages). The pool does not coalesce: a multi-page block comes from the bump pointer.
    free: VecDeque<u32>,
    attempts: u64,
    fail_at: Option<u64>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            pages: alloc::vec![Page::default(); POOL_PAGES],
            high: 0,
            free: VecDeque::new(),
            attempts: 0,
            fail_at: None,
        }
    }
}

impl Pool {
    /// Back to a fresh boot; cost follows the pages used.
    pub fn reset(&mut self) {
        for p in &mut self.pages[..self.high] {
            *p = Page::default();
        }
        self.high = 0;
        self.free.clear();
        self.attempts = 0;
        self.fail_at = None;
    }

    /// Makes the `nth` allocation from now fail.
    pub fn fail_allocation(&mut self, nth: u32) {
        self.fail_at = Some(self.attempts + u64::from(nth));
    }

    /// Picks 2^`order` naturally aligned pages; the caller initialises their records.
    pub fn take(&mut self, order: u32) -> Result<usize, AllocFail> {
        let attempt = self.attempts;
        self.attempts += 1;
        if self.fail_at == Some(attempt) {
            self.fail_at = None;
            return Err(AllocFail::Injected);
        }
        let n = 1usize << order;
        if n == 1 {
            if let Some(i) = self.free.pop_back() {
                return Ok(i as usize);
            }
        }
        let aligned = self.high.next_multiple_of(n);
        if aligned + n > POOL_PAGES {
            return Err(AllocFail::Exhausted);
        }
        // Pages skipped for alignment stay available as single pages, reused last.
        for p in (self.high..aligned).rev() {
            self.free.push_front(p as u32);
        }
        self.high = aligned + n;
        Ok(aligned)
    }

    /// Returns page `i` to the free list, keeping what later allocations need to know.
    pub fn release(&mut self, i: usize) {
        let p = self.pages[i];
        self.pages[i] = Page { touched_at: p.touched_at, dirty_content: p.dirty_content, ..Page::default() };
        self.free.push_back(i as u32);
    }

    /// Allocated pages now, and pages used since the last reset.
    pub fn usage(&self) -> (usize, usize) {
        (self.pages[..self.high].iter().filter(|p| p.allocated).count(), self.high)
    }

    /// Index of the page holding `pa` under `layout`, if in the pool.
    pub fn index(layout: &Layout, pa: crate::arch::Pa) -> Option<usize> {
        layout.pool_index(pa)
    }
}
