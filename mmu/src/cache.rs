//! The memory-object cache (`kvm_mmu_memory_cache`): pages set aside before the table lock
//! is taken, so that building tables never allocates under it.

use crate::addr::Pa;
use crate::error::Error;
use crate::platform::Platform;

/// Capacity of a cache (`KVM_NR_MEM_OBJS`).
pub const CACHE_CAPACITY: usize = 40;

/// A stack of zeroed pages.
#[derive(Clone, Debug)]
pub struct MemoryCache {
    objects: [Pa; CACHE_CAPACITY],
    nobjs: usize,
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCache {
    /// An empty cache.
    pub const fn new() -> Self {
        MemoryCache { objects: [Pa(0); CACHE_CAPACITY], nobjs: 0 }
    }

    /// `mmu_topup_memory_cache`: when fewer than `min` pages are held, allocates up to `max`.
    /// On `ENOMEM` the pages allocated so far stay in the cache, as in the kernel.
    pub fn topup<P: Platform>(&mut self, p: &mut P, min: usize, max: usize) -> Result<(), Error> {
        // The seed has BUG_ON(max > KVM_NR_MEM_OBJS); both are caller mistakes here.
        if max > CACHE_CAPACITY || min > max {
            return Err(Error::BadCacheRequest);
        }
        if self.nobjs >= min {
            return Ok(());
        }
        while self.nobjs < max {
            let page = p.alloc_pages(0).ok_or(Error::NoMemory)?;
            self.objects[self.nobjs] = page;
            self.nobjs += 1;
        }
        Ok(())
    }

    /// `mmu_memory_cache_alloc`: takes the most recently added page.
    ///
    /// # Panics
    /// When the cache is empty: the caller forgot to top it up (a `BUG_ON` in the seed).
    pub fn alloc(&mut self) -> Pa {
        assert!(self.nobjs > 0, "BUG: memory cache empty: table allocation without a prior topup");
        self.nobjs -= 1;
        self.objects[self.nobjs]
    }

    /// `mmu_free_memory_cache`: frees every page still held.
    pub fn free_all<P: Platform>(&mut self, p: &mut P) {
        while self.nobjs > 0 {
            self.nobjs -= 1;
            p.free_pages(self.objects[self.nobjs], 0);
        }
    }

    /// Number of pages held.
    pub const fn len(&self) -> usize {
        self.nobjs
    }

    /// True when no page is held.
    pub const fn is_empty(&self) -> bool {
        self.nobjs == 0
    }

    /// The pages held, oldest first.
    pub fn pages(&self) -> &[Pa] {
        &self.objects[..self.nobjs]
    }
}
