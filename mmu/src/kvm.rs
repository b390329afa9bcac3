//! The per-VM state (`struct kvm_arch` plus the one vCPU's memory cache) and the entry points
//! a hypervisor calls around the table code: the fault path and the MMU-notifier hooks.

use crate::addr::{Hva, Ipa, Pa, Vttbr, PAGE_SIZE};
use crate::cache::{MemoryCache, CACHE_CAPACITY};
use crate::defects::Defects;
use crate::desc::{Descriptor, S2Attrs};
use crate::error::Error;
use crate::memslot::{Memslot, Memslots};
use crate::platform::Platform;
use crate::stage2::{check_ipa, Overwrite};
use crate::vmid::VmidState;

/// One VM with one vCPU.
#[derive(Clone, Debug)]
pub struct Kvm {
    /// The level-1 root (`kvm->arch.pgd`).
    pub(crate) root: Option<Pa>,
    /// VMID, generation and VTTBR.
    pub(crate) vmid: VmidState,
    /// The vCPU's memory-object cache.
    pub(crate) cache: MemoryCache,
    /// Guest physical memory as the VMM laid it out.
    pub(crate) memslots: Memslots,
    /// With [`Defects::SPTE_INVALID_SLOT`]: the slot last removed, still in the lookup of
    /// `kvm_set_spte_hva` (marked invalid) until the next memslot change.
    pub(crate) invalid_slot: Option<Memslot>,
    /// Seed defects in force for this VM.
    pub(crate) defects: Defects,
}

impl Kvm {
    /// A VM with no root yet (`kvm_arch_init_vm` then calls [`Kvm::alloc_stage2_pgd`]).
    pub fn new(defects: Defects) -> Self {
        Kvm {
            root: None,
            vmid: VmidState::default(),
            cache: MemoryCache::new(),
            memslots: Memslots::default(),
            invalid_slot: None,
            defects,
        }
    }

    /// The root table, if allocated.
    pub const fn root(&self) -> Option<Pa> {
        self.root
    }
    /// VMID state.
    pub const fn vmid_state(&self) -> VmidState {
        self.vmid
    }
    /// The VTTBR the VM last got (0 before its first `update_vttbr`).
    pub const fn vttbr(&self) -> Vttbr {
        self.vmid.vttbr
    }
    /// The vCPU's memory cache.
    pub const fn cache(&self) -> &MemoryCache {
        &self.cache
    }
    /// The memslots.
    pub const fn memslots(&self) -> &Memslots {
        &self.memslots
    }
    /// The defects in force.
    pub const fn defects(&self) -> Defects {
        self.defects
    }

    /// `mmu_topup_memory_cache` on the vCPU's cache.
    pub fn topup<P: Platform>(&mut self, p: &mut P, min: usize, max: usize) -> Result<(), Error> {
        self.cache.topup(p, min, max)
    }

    /// `kvm_mmu_free_memory_caches`.
    pub fn free_memory_caches<P: Platform>(&mut self, p: &mut P) {
        self.cache.free_all(p);
    }

    /// The stage-2 fault path: top up the vCPU cache outside the table lock, then map the
    /// guest frame `pa` at `ipa` under it.
    pub fn map_guest_page<P: Platform>(
        &mut self,
        p: &mut P,
        ipa: Ipa,
        pa: Pa,
        writable: bool,
    ) -> Result<(), Error> {
        if self.root.is_none() {
            return Err(Error::NoRoot);
        }
        check_ipa(ipa)?;
        check_frame(pa)?;
        self.cache.topup(p, 2, CACHE_CAPACITY)?;
        let attrs = if writable { S2Attrs::GUEST_RW } else { S2Attrs::GUEST_RO };
        let mut cache = core::mem::take(&mut self.cache);
        let ret =
            self.stage2_set_pte(p, Some(&mut cache), ipa, Descriptor::page(pa, attrs), Overwrite::Replace);
        self.cache = cache;
        ret
    }

    /// Adds a memslot.
    pub fn add_memslot(&mut self, slot: Memslot) -> Result<(), Error> {
        self.invalid_slot = None;
        self.memslots.add(slot)
    }

    /// Removes a memslot and unmaps its guest physical range, as later kernels do in
    /// `kvm_arch_flush_shadow_memslot` (the seed leaves the mappings: a defect switch).
    pub fn remove_memslot<P: Platform>(&mut self, p: &mut P, id: u16) -> Result<Memslot, Error> {
        self.invalid_slot = None;
        let slot = self.memslots.remove(id)?;
        if self.defects.contains(Defects::SPTE_INVALID_SLOT) {
            // The deletion marks the slot KVM_MEMSLOT_INVALID and flushes its range while the
            // slot can still be found; change_pte before 2230f9e1171a did not skip it.
            self.invalid_slot = Some(slot);
        }
        if self.root.is_some() && !self.defects.contains(Defects::MEMSLOT_KEEP_MAPPINGS) {
            self.clear_range(p, Ipa(slot.gpa_start()), Ipa(slot.gpa_end()))?;
        }
        Ok(slot)
    }

    /// `kvm_unmap_hva`: clears the stage-2 entry of every guest page backed by `hva`.
    pub fn unmap_hva<P: Platform>(&mut self, p: &mut P, hva: Hva) -> Result<(), Error> {
        if self.root.is_none() {
            return Ok(());
        }
        let mut i = 0;
        while let Some(s) = self.memslots.get(i) {
            if let Some(gpa) = s.gpa_of(hva) {
                self.stage2_clear_pte(p, gpa.page())?;
            }
            i += 1;
        }
        Ok(())
    }

    /// `kvm_unmap_hva_range`: `kvm_unmap_hva` for every page of `[start, end)`, which must be
    /// page aligned. Walks slot by slot and skips regions without tables, so the cost follows
    /// the tables present, not the length of the range.
    pub fn unmap_hva_range<P: Platform>(&mut self, p: &mut P, start: Hva, end: Hva) -> Result<(), Error> {
        if !start.is_page_aligned() || !end.is_page_aligned() {
            return Err(Error::Misaligned);
        }
        if self.root.is_none() {
            return Ok(());
        }
        let mut i = 0;
        while let Some(s) = self.memslots.get(i) {
            i += 1;
            let lo = start.0.max(s.userspace_addr.0);
            let hi = end.0.min(s.hva_end());
            if lo < hi {
                let gpa = |hva: u64| Ipa(s.gpa_start() + (hva - s.userspace_addr.0));
                self.clear_range(p, gpa(lo), gpa(hi))?;
            }
        }
        Ok(())
    }

    /// `kvm_set_spte_hva`: points the existing stage-2 entries of `hva`'s guest pages at `pa`
    /// (read-only, as `PAGE_S2` in later kernels). Missing tables are not built.
    pub fn set_spte_hva<P: Platform>(&mut self, p: &mut P, hva: Hva, pa: Pa) -> Result<(), Error> {
        check_frame(pa)?;
        if self.root.is_none() {
            return Ok(());
        }
        let attrs =
            if self.defects.contains(Defects::SPTE_WRITABLE) { S2Attrs::GUEST_RW } else { S2Attrs::GUEST_RO };
        let pte = Descriptor::page(pa, attrs);
        let mut i = 0;
        while let Some(s) = self.memslots.get(i) {
            if let Some(gpa) = s.gpa_of(hva) {
                self.stage2_set_pte(p, None, gpa.page(), pte, Overwrite::Replace)?;
            }
            i += 1;
        }
        // Only set with the defect: later kernels skip a slot marked invalid.
        if let Some(gpa) = self.invalid_slot.and_then(|s| s.gpa_of(hva)) {
            self.stage2_set_pte(p, None, gpa.page(), pte, Overwrite::Replace)?;
        }
        Ok(())
    }
}

/// Caller mistakes on a frame address.
fn check_frame(pa: Pa) -> Result<(), Error> {
    if pa.0 & (PAGE_SIZE - 1) != 0 {
        Err(Error::Misaligned)
    } else if !pa.in_range() {
        Err(Error::OutOfRange)
    } else {
        Ok(())
    }
}
