//! Stage-2 table maintenance: root allocation, `stage2_set_pte`, `stage2_clear_pte`,
//! teardown and `kvm_phys_addr_ioremap`, each a visitor over [`crate::walk`].
//!
//! Table pages are reference counted as in the seed: a table's count is 1 (its own) plus one
//! per valid entry; a table whose last entry is cleared is unlinked and freed.

use crate::addr::{Ipa, Pa, IPA_LIMIT, LEAF_LEVEL, PAGE_SIZE, ROOT_LEVEL, ROOT_ORDER};
use crate::cache::MemoryCache;
use crate::defects::Defects;
use crate::desc::{Descriptor, S2Attrs};
use crate::error::Error;
use crate::kvm::Kvm;
use crate::platform::{Platform, Warning};
use crate::walk::{walk, Entry, Flow, Visit, Visitor};

/// Bytes of the root table.
const ROOT_BYTES: u64 = PAGE_SIZE << ROOT_ORDER;
/// The IPA span translated through one page of the root (512 level-1 entries: 2^39).
const ROOT_PAGE_SPAN: u64 = (PAGE_SIZE / 8) * crate::addr::level_size(ROOT_LEVEL);

/// What `stage2_set_pte` should do with a live entry it finds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Overwrite {
    /// Replace it (the fault path and `kvm_set_spte_hva`).
    Replace,
    /// Refuse with `EFAULT` (`ioremap` in later kernels).
    Refuse,
    /// Replace it in place and invalidate afterwards, as the seed's `stage2_set_pte` does
    /// for every caller (`ioremap` with the seed's overwrite).
    InPlace,
}

/// How a `stage2_clear_pte` walk ended, so range clears can skip empty regions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cleared {
    /// The level of an invalid table entry that ended the walk: the whole region that entry
    /// covers is empty. `None` when the walk reached level 3.
    pub empty_level: Option<u8>,
    /// The level of the table entry nearest the root that the clear unlinked because the
    /// table it pointed to became empty: 2 when a level-3 table was freed, 1 when a level-2
    /// table was freed as well. `None` when no table was freed.
    pub unlinked_level: Option<u8>,
}

impl Kvm {
    /// The page whose count tracks the entry at `ptr` of a table at `level`.
    fn counted_page(&self, level: u8, ptr: Pa, root: Pa) -> Pa {
        if level == ROOT_LEVEL && !self.defects.contains(Defects::PGD_TAIL_REFCOUNT) {
            root // the root is counted as a whole, on its first page
        } else {
            ptr.page()
        }
    }

    /// Writes an entry and cleans it to the PoC, which ends with a DSB (`kvm_set_pte` with
    /// `flush_pmd_entry` in later kernels; the seed's `set_pte_ext` is a plain store on SMP).
    fn write_entry<P: Platform>(&self, p: &mut P, e: &mut Entry, desc: Descriptor) {
        e.set(p, desc);
        if !self.defects.contains(Defects::SET_PTE_NO_BARRIER) {
            p.clean_dcache(e.ptr, 8);
        }
    }

    /// `__kvm_tlb_flush_vmid` for this VM's current VMID.
    fn flush_tlb<P: Platform>(&self, p: &mut P) {
        if !self.defects.contains(Defects::TLB_FLUSH_STUB) {
            p.tlb_flush_vmid(self.vttbr().vmid());
        }
    }

    /// `kvm_alloc_stage2_pgd`: allocates and cleans the 8 KiB level-1 root.
    pub fn alloc_stage2_pgd<P: Platform>(&mut self, p: &mut P) -> Result<(), Error> {
        if self.root.is_some() {
            return Err(Error::AlreadyInitialized);
        }
        let root = p.alloc_pages(ROOT_ORDER).ok_or(Error::NoMemory)?;
        p.clean_dcache(root, ROOT_BYTES);
        self.root = Some(root);
        Ok(())
    }

    /// `kvm_free_stage2_pgd`: frees every table below the root, then the root. Leaf entries
    /// drop their table reference first; a table that still holds other references is a
    /// `WARN_ON`. Does nothing when there is no root.
    pub fn free_stage2_pgd<P: Platform>(&mut self, p: &mut P) {
        let Some(root) = self.root else { return };
        let mut v = Teardown { kvm: self, root };
        // Xen before 14c57887f369 bounded its loop over the concatenated root pages by the
        // root level (1), not the number of root pages (2): only page 0 was visited.
        let end = if self.defects.contains(Defects::ROOT_PAGE0_ONLY) { ROOT_PAGE_SPAN } else { IPA_LIMIT };
        // The teardown visitor never fails and never stops.
        let _ = walk(p, root, Ipa(0), Ipa(end), &mut v);
        // The seed checks the page of the last entry it looked at, the root's tail page.
        let checked = self.counted_page(ROOT_LEVEL, root.add(ROOT_BYTES - 8), root);
        let count = p.page_count(checked);
        if count != 1 {
            p.warn(Warning::RootCountAtFree { page: checked, count });
        }
        p.free_pages(root, ROOT_ORDER);
        self.root = None;
    }

    /// `stage2_set_pte`: installs `new` as the level-3 entry for `ipa`, building missing tables
    /// from `cache`. Without a cache (`kvm_set_spte_hva`) a missing table ends the call
    /// quietly. A live entry is replaced with break-before-make, or refused per `overwrite`.
    pub fn stage2_set_pte<P: Platform>(
        &mut self,
        p: &mut P,
        cache: Option<&mut MemoryCache>,
        ipa: Ipa,
        new: Descriptor,
        overwrite: Overwrite,
    ) -> Result<(), Error> {
        let root = self.root.ok_or(Error::NoRoot)?;
        check_ipa(ipa)?;
        let mut v = SetPte { kvm: self, root, cache, new, overwrite };
        walk(p, root, ipa, ipa.add(1), &mut v)?;
        p.dsb();
        Ok(())
    }

    /// `stage2_clear_pte`: clears the level-3 entry for `ipa`, unlinks and frees tables left
    /// empty, and invalidates the TLB before any table is freed.
    pub fn stage2_clear_pte<P: Platform>(&mut self, p: &mut P, ipa: Ipa) -> Result<Cleared, Error> {
        let root = self.root.ok_or(Error::NoRoot)?;
        check_ipa(ipa)?;
        let mut v = ClearPte {
            kvm: self,
            root,
            flush: false,
            empty_level: None,
            unlinked_level: None,
            freed: [Pa(0); 2],
            nfreed: 0,
        };
        walk(p, root, ipa, ipa.add(1), &mut v)?;
        let ClearPte { flush, empty_level, unlinked_level, freed, nfreed, .. } = v;
        // Hafnium before c1012d6b74d7 invalidated only when a valid entry was replaced by a
        // valid one: a valid entry made invalid got no TLBI.
        if flush && !self.defects.contains(Defects::CLEAR_NO_TLBI) {
            self.flush_tlb(p);
        }
        for &table in &freed[..nfreed] {
            p.free_pages(table, 0);
        }
        Ok(Cleared { empty_level, unlinked_level })
    }

    /// Clears every page of `[start, end)` (page aligned) as successive `stage2_clear_pte`
    /// calls would, skipping regions whose tables do not exist.
    pub(crate) fn clear_range<P: Platform>(&mut self, p: &mut P, start: Ipa, end: Ipa) -> Result<(), Error> {
        let mut addr = start.0;
        while addr < end.0 {
            let done = self.stage2_clear_pte(p, Ipa(addr))?;
            // The one-loop unmap_range of 2013 stepped the pud level with pud_addr_end, which
            // the folded pud of ARM defines as `end`: an empty level-1 entry, or walking back
            // up the ladder after freeing a level-2 table, ended the walk.
            if self.defects.contains(Defects::UNMAP_SKIP_TO_END)
                && (done.empty_level == Some(ROOT_LEVEL) || done.unlinked_level == Some(ROOT_LEVEL))
            {
                break;
            }
            addr = match done.empty_level {
                // Before 357ad203d45c the walker stepped a whole granule from where it was.
                Some(level) if self.defects.contains(Defects::WALK_UNALIGNED_ADVANCE) => {
                    addr.saturating_add(crate::addr::level_size(level))
                }
                Some(level) => (addr | (crate::addr::level_size(level) - 1)) + 1,
                None => addr + PAGE_SIZE,
            };
        }
        Ok(())
    }

    /// `kvm_phys_addr_ioremap`: maps `[pa, pa + size)` as device memory at `ipa`, one page at a
    /// time, each with its own two-page cache topup. Neither address needs to be page
    /// aligned: the range covers every page the bytes touch. Pages mapped before a failure stay.
    pub fn phys_addr_ioremap<P: Platform>(
        &mut self,
        p: &mut P,
        ipa: Ipa,
        pa: Pa,
        size: u64,
    ) -> Result<(), Error> {
        if self.root.is_none() {
            return Err(Error::NoRoot);
        }
        let last_ipa = ipa.0.checked_add(size.max(1) - 1).ok_or(Error::OutOfRange)?;
        let last_pa = pa.0.checked_add(size.max(1) - 1).ok_or(Error::OutOfRange)?;
        // Every page the IPA range touches takes the next frame from pa's page on, so with an
        // unaligned IPA the last frame mapped lies past the page of `pa + size - 1`.
        let pages = last_ipa / PAGE_SIZE - ipa.0 / PAGE_SIZE + 1;
        let last_frame = pa.page().0.checked_add((pages - 1) * PAGE_SIZE).ok_or(Error::OutOfRange)?;
        if last_ipa >= IPA_LIMIT || !Pa(last_pa).in_range() || !Pa(last_frame).in_range() {
            return Err(Error::OutOfRange);
        }
        // The seed ANDs a 64-bit IPA with the 32-bit unsigned long PAGE_MASK.
        let page_mask =
            if self.defects.contains(Defects::IOREMAP_32BIT_MASK) { 0xffff_f000 } else { !(PAGE_SIZE - 1) };
        let end = (ipa.0 + size + PAGE_SIZE - 1) & page_mask;
        let overwrite = if self.defects.contains(Defects::IOREMAP_OVERWRITE) {
            Overwrite::InPlace
        } else {
            Overwrite::Refuse
        };
        let mut cache = MemoryCache::new();
        let mut frame = pa.page();
        let mut addr = ipa.0;
        let mut ret = Ok(());
        while addr < end {
            ret = cache.topup(p, 2, 2);
            if ret.is_ok() {
                let pte = Descriptor::page(frame, S2Attrs::DEVICE_RW);
                ret = self.stage2_set_pte(p, Some(&mut cache), Ipa(addr).page(), pte, overwrite);
            }
            if ret.is_err() {
                break;
            }
            frame = frame.add(PAGE_SIZE);
            addr += PAGE_SIZE;
        }
        cache.free_all(p);
        ret
    }
}

/// Caller mistakes on a page address.
pub(crate) fn check_ipa(ipa: Ipa) -> Result<(), Error> {
    if !ipa.is_page_aligned() {
        Err(Error::Misaligned)
    } else if !ipa.in_range() {
        Err(Error::OutOfRange)
    } else {
        Ok(())
    }
}

struct SetPte<'a, 'c> {
    kvm: &'a Kvm,
    root: Pa,
    cache: Option<&'c mut MemoryCache>,
    new: Descriptor,
    overwrite: Overwrite,
}

impl<P: Platform> Visitor<P> for SetPte<'_, '_> {
    fn visit(&mut self, p: &mut P, visit: Visit, e: &mut Entry) -> Result<Flow, Error> {
        if visit != Visit::Leaf {
            return Ok(Flow::Continue);
        }
        let kvm = self.kvm;
        if e.level < LEAF_LEVEL {
            assert!(
                !e.desc.is_valid(),
                "BUG: block or reserved descriptor {:?} at level {}",
                e.desc,
                e.level
            );
            let Some(cache) = self.cache.as_deref_mut() else {
                return Ok(Flow::Stop); // kvm_set_spte_hva does not build tables
            };
            let table = cache.alloc();
            // The seed cleans new level-3 tables (clean_pte_table) but not level-2 ones.
            if e.level + 1 == LEAF_LEVEL || !kvm.defects.contains(Defects::NO_DCACHE_CLEAN) {
                p.clean_dcache(table, PAGE_SIZE);
            }
            kvm.write_entry(p, e, Descriptor::table(table));
            p.get_page(kvm.counted_page(e.level, e.ptr, self.root));
            return Ok(Flow::Continue);
        }
        let old = e.desc;
        if !old.is_valid() {
            kvm.write_entry(p, e, self.new);
            p.get_page(kvm.counted_page(e.level, e.ptr, self.root));
        } else if self.overwrite == Overwrite::Refuse {
            return Err(Error::Fault);
        } else if kvm.defects.contains(Defects::NO_BBM) || self.overwrite == Overwrite::InPlace {
            // The seed: make, then invalidate.
            kvm.write_entry(p, e, self.new);
            kvm.flush_tlb(p);
        } else if old != self.new && kvm.defects.contains(Defects::BBM_LATE_TLBI) {
            kvm.write_entry(p, e, Descriptor::INVALID);
            kvm.write_entry(p, e, self.new);
            kvm.flush_tlb(p);
        } else if old != self.new {
            // Break, invalidate, make.
            kvm.write_entry(p, e, Descriptor::INVALID);
            if !kvm.defects.contains(Defects::SET_PTE_NO_BARRIER) {
                p.dsb();
            }
            kvm.flush_tlb(p);
            kvm.write_entry(p, e, self.new);
        }
        if old.is_valid() && kvm.defects.contains(Defects::REPLACE_EXTRA_REF) {
            // Before 5c646b7e1d8b every leaf installed took a reference, live entry or not.
            p.get_page(kvm.counted_page(e.level, e.ptr, self.root));
        }
        Ok(Flow::Stop)
    }
}

struct ClearPte<'a> {
    kvm: &'a Kvm,
    root: Pa,
    flush: bool,
    empty_level: Option<u8>,
    unlinked_level: Option<u8>,
    /// Tables unlinked by this clear, freed after the TLB invalidation.
    freed: [Pa; 2],
    nfreed: usize,
}

impl<P: Platform> Visitor<P> for ClearPte<'_> {
    fn visit(&mut self, p: &mut P, visit: Visit, e: &mut Entry) -> Result<Flow, Error> {
        let kvm = self.kvm;
        match visit {
            Visit::TablePre => Ok(Flow::Continue),
            Visit::Leaf if e.level < LEAF_LEVEL => {
                assert!(
                    !e.desc.is_valid(),
                    "BUG: block or reserved descriptor {:?} at level {}",
                    e.desc,
                    e.level
                );
                self.empty_level = Some(e.level);
                Ok(Flow::Stop)
            }
            Visit::Leaf => {
                if !e.desc.is_valid() && !kvm.defects.contains(Defects::CLEAR_NONPRESENT) {
                    return Ok(Flow::Stop);
                }
                kvm.write_entry(p, e, Descriptor::INVALID);
                p.put_page(kvm.counted_page(e.level, e.ptr, self.root));
                self.flush = true;
                Ok(Flow::Continue)
            }
            Visit::TablePost => {
                let table = e.desc.output_address();
                if p.page_count(table) != 1 {
                    return Ok(Flow::Continue);
                }
                kvm.write_entry(p, e, Descriptor::INVALID);
                self.unlinked_level = Some(e.level);
                if kvm.defects.contains(Defects::FREE_BEFORE_FLUSH) {
                    p.free_pages(table, 0);
                } else {
                    self.freed[self.nfreed] = table;
                    self.nfreed += 1;
                }
                p.put_page(kvm.counted_page(e.level, e.ptr, self.root));
                Ok(Flow::Continue)
            }
        }
    }
}

struct Teardown<'a> {
    kvm: &'a Kvm,
    root: Pa,
}

impl<P: Platform> Visitor<P> for Teardown<'_> {
    fn visit(&mut self, p: &mut P, visit: Visit, e: &mut Entry) -> Result<Flow, Error> {
        match visit {
            Visit::TablePre => {}
            Visit::Leaf if e.level < LEAF_LEVEL => {
                assert!(
                    !e.desc.is_valid(),
                    "BUG: block or reserved descriptor {:?} at level {} at teardown",
                    e.desc,
                    e.level
                );
            }
            Visit::Leaf => {
                if e.desc.is_valid() {
                    p.put_page(e.ptr);
                }
            }
            Visit::TablePost => {
                let table = e.desc.output_address();
                let count = p.page_count(table);
                if count != 1 {
                    p.warn(Warning::TableCountAtFree { table, count });
                }
                p.free_pages(table, 0);
                p.put_page(self.kvm.counted_page(e.level, e.ptr, self.root));
            }
        }
        Ok(Flow::Continue)
    }
}
