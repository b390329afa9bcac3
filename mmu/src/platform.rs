//! The one seam between the table code and the machine, shaped like `kvm_pgtable_mm_ops`.

use crate::addr::{Pa, Vmid};
use crate::desc::Descriptor;

/// A `WARN_ON` of the seed: something is wrong but execution goes on.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Warning {
    /// A table page about to be freed at teardown does not hold exactly its own reference.
    TableCountAtFree {
        /// The table page.
        table: Pa,
        /// Its reference count.
        count: u32,
    },
    /// The root page checked at teardown does not hold exactly its own reference.
    RootCountAtFree {
        /// The page whose count was checked.
        page: Pa,
        /// Its reference count.
        count: u32,
    },
}

/// Everything the stage-2 code needs from the machine. The crate never touches memory,
/// refcounts, caches or TLBs except through this trait.
pub trait Platform {
    /// Allocates 2^`order` contiguous, naturally aligned, zeroed pages (`__get_free_pages`
    /// with `__GFP_ZERO`). Like the kernel's non-compound allocations, the first page gets a
    /// reference count of 1 and the others 0. `None` when memory is exhausted.
    fn alloc_pages(&mut self, order: u32) -> Option<Pa>;
    /// Returns 2^`order` pages starting at `pa` to the allocator.
    fn free_pages(&mut self, pa: Pa, order: u32);
    /// Takes a reference on the page containing `pa`.
    fn get_page(&mut self, pa: Pa);
    /// Drops a reference on the page containing `pa` (at zero the page is freed, as in Linux).
    fn put_page(&mut self, pa: Pa);
    /// The reference count of the page containing `pa`.
    fn page_count(&mut self, pa: Pa) -> u32;
    /// Reads the descriptor at `pa`.
    fn read_desc(&mut self, pa: Pa) -> Descriptor;
    /// Writes the descriptor at `pa` (a single-copy-atomic 64-bit store).
    fn write_desc(&mut self, pa: Pa, desc: Descriptor);
    /// Cleans `[pa, pa + len)` from the data cache to the point of coherency.
    fn clean_dcache(&mut self, pa: Pa, len: u64);
    /// Invalidates every stage-1 and stage-2 TLB entry tagged with `vmid`
    /// (`__kvm_tlb_flush_vmid`), with the barriers that make it complete.
    fn tlb_flush_vmid(&mut self, vmid: Vmid);
    /// Invalidates every guest TLB entry of every VMID (`__kvm_flush_vm_context`).
    fn tlb_flush_all(&mut self);
    /// A data synchronization barrier: descriptor writes are observable by the walker after it.
    fn dsb(&mut self);
    /// Reports a `WARN_ON`.
    fn warn(&mut self, warning: Warning);
}
