//! `tiny-s2`: a small AArch64 stage-2 page table, the kind of code a hypervisor keeps for
//! its guests. 4 KiB granule, 39-bit IPA (VTCR_EL2.T0SZ = 25, SL0 = 1: the root is one
//! level-1 table), and one level of blocks: 2 MiB at level 2, pages at level 3.
//!
//! The hypervisor supplies memory and maintenance through [`MmOps`] (as KVM's
//! `kvm_pgtable_mm_ops` does), so the same code runs on hardware and under a test harness.
//!
//! - [`Stage2::map`] maps only over unmapped IPAs ([`Error::Busy`] otherwise: the caller
//!   unmaps first), with a block wherever IPA, PA and length allow it.
//! - [`Stage2::unmap`] and [`Stage2::protect`] change what is mapped in a range; a block
//!   the range covers only in part is split into pages first, with break-before-make.
//! - Changing the memory type of a live entry, its output address or its size breaks it
//!   first (invalid, DSB, TLBI, DSB, then the new entry), as Arm ARM D8.16.1 requires.
//!   Every change is followed by TLBI IPAS2E1IS of each entry, then TLBI VMALLE1IS for
//!   the combined stage 1+2 entries.
//! - An operation that fails changes no translation: what it needs is allocated first.
//!
//! With the `bug` feature, unmapping a whole block forgets the block's TLBI IPAS2E1IS:
//! the guest may keep using the stale translation.
#![no_std]
#![warn(missing_docs)]

/// One past the highest IPA.
pub const IPA_LIMIT: u64 = 1 << 39;
/// One past the highest output address (48-bit PA).
pub const PA_LIMIT: u64 = 1 << 48;
/// A page.
pub const PAGE: u64 = 1 << 12;
/// A level-2 block.
pub const BLOCK: u64 = 1 << 21;
const GIB: u64 = 1 << 30;
const ENTRIES: u64 = 512;

const VALID: u64 = 1;
/// Bit 1: a table (levels 1, 2) or a page (level 3); clear in a block.
const TABLE_OR_PAGE: u64 = 1 << 1;
const AF: u64 = 1 << 10;
const XN: u64 = 1 << 54;
const OA: u64 = 0x0000_ffff_ffff_f000;
/// MemAttr[5:2] and SH[9:8]: a change of either needs break-before-make.
const TYPE: u64 = 0b1111 << 2 | 0b11 << 8;

/// Why an operation was refused. A refused operation changed no translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An address or length is not page aligned.
    Misaligned,
    /// The range reaches past the IPA space, or the frames past the PA space.
    OutOfRange,
    /// `map` over an IPA that is mapped already.
    Busy,
    /// A table page could not be allocated.
    NoMemory,
}

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    /// Device-nGnRE instead of normal write-back memory.
    pub device: bool,
    /// Guest loads.
    pub read: bool,
    /// Guest stores.
    pub write: bool,
    /// Guest instruction fetches.
    pub exec: bool,
}

impl Attrs {
    /// The descriptor's attribute bits (AF set; the caller adds the type bits and the OA).
    const fn bits(self) -> u64 {
        let (memattr, sh) = if self.device { (0b0001, 0b00) } else { (0b1111, 0b11) };
        let s2ap = self.read as u64 | (self.write as u64) << 1;
        memattr << 2 | s2ap << 6 | sh << 8 | AF | if self.exec { 0 } else { XN }
    }
}

/// What the hypervisor provides: table memory by physical address, barriers and TLB
/// maintenance. The TLBIs are the Inner Shareable ones, for the VMID given.
pub trait MmOps {
    /// A zeroed page for a table, or `None` when memory is exhausted.
    fn zalloc_page(&mut self) -> Option<u64>;
    /// Returns a table page.
    fn free_page(&mut self, pa: u64);
    /// Reads the descriptor at `pa`.
    fn read(&mut self, pa: u64) -> u64;
    /// Writes the descriptor at `pa` (one 64-bit single-copy-atomic store).
    fn write(&mut self, pa: u64, desc: u64);
    /// DSB ISH.
    fn dsb(&mut self);
    /// TLBI IPAS2E1IS: the stage-2 entries of `ipa` under `vmid`.
    fn tlbi_ipa(&mut self, vmid: u16, ipa: u64);
    /// TLBI VMALLE1IS: the stage-1 and combined entries of `vmid`.
    fn tlbi_vmalle1(&mut self, vmid: u16);
    /// TLBI VMALLS12E1IS: every entry of `vmid`.
    fn tlbi_vmalls12e1(&mut self, vmid: u16);
}

/// One guest's stage-2 tables.
#[derive(Debug)]
pub struct Stage2 {
    root: u64,
    vmid: u16,
}

const fn index(ipa: u64, shift: u32) -> u64 {
    (ipa >> shift) % ENTRIES
}

/// The end of the `size`-aligned region holding `ipa`, capped at `end`.
const fn region_end(ipa: u64, size: u64, end: u64) -> u64 {
    let e = (ipa | (size - 1)) + 1;
    if e < end {
        e
    } else {
        end
    }
}

fn check(ipa: u64, size: u64) -> Result<u64, Error> {
    if !ipa.is_multiple_of(PAGE) || !size.is_multiple_of(PAGE) {
        return Err(Error::Misaligned);
    }
    ipa.checked_add(size).filter(|&e| e <= IPA_LIMIT).ok_or(Error::OutOfRange)
}

impl Stage2 {
    /// Empty tables for `vmid`.
    pub fn new(mm: &mut impl MmOps, vmid: u16) -> Result<Stage2, Error> {
        let root = mm.zalloc_page().ok_or(Error::NoMemory)?;
        Ok(Stage2 { root, vmid })
    }

    /// The root table's physical address.
    pub const fn root(&self) -> u64 {
        self.root
    }

    /// VTTBR_EL2: the root and the VMID.
    pub const fn vttbr(&self) -> u64 {
        self.root | (self.vmid as u64) << 48
    }

    /// Maps `[ipa, ipa + size)` to the frames from `pa`.
    pub fn map(
        &mut self,
        mm: &mut impl MmOps,
        ipa: u64,
        pa: u64,
        size: u64,
        attrs: Attrs,
    ) -> Result<(), Error> {
        let end = check(ipa, size)?;
        if !pa.is_multiple_of(PAGE) {
            return Err(Error::Misaligned);
        }
        if pa.checked_add(size).is_none_or(|e| e > PA_LIMIT) {
            return Err(Error::OutOfRange);
        }
        if self.any_mapped(mm, ipa, end) {
            return Err(Error::Busy);
        }
        // Every table the leaves need, linked first: an empty table translates nothing.
        let mut at = ipa;
        while at < end {
            let next = region_end(at, BLOCK, end);
            let l2 = self.table(mm, self.root, index(at, 30))?;
            let slot = l2 + 8 * index(at, 21);
            if !(block_fits(at, pa + (at - ipa), next) && mm.read(slot) & VALID == 0) {
                self.table(mm, l2, index(at, 21))?;
            }
            at = next;
        }
        let mut at = ipa;
        while at < end {
            let next = region_end(at, BLOCK, end);
            let oa = pa + (at - ipa);
            let slot = self.l2_slot(mm, at).expect("linked above");
            let e = mm.read(slot);
            if e & VALID == 0 {
                mm.write(slot, oa | attrs.bits() | VALID);
            } else {
                let l3 = e & OA;
                for p in (at..next).step_by(PAGE as usize) {
                    mm.write(l3 + 8 * index(p, 12), (oa + (p - at)) | attrs.bits() | TABLE_OR_PAGE | VALID);
                }
            }
            at = next;
        }
        mm.dsb();
        Ok(())
    }

    /// Unmaps whatever is mapped in `[ipa, ipa + size)`.
    pub fn unmap(&mut self, mm: &mut impl MmOps, ipa: u64, size: u64) -> Result<(), Error> {
        self.change(mm, ipa, size, None)
    }

    /// Gives what is mapped in `[ipa, ipa + size)` the attributes `attrs`.
    pub fn protect(&mut self, mm: &mut impl MmOps, ipa: u64, size: u64, attrs: Attrs) -> Result<(), Error> {
        self.change(mm, ipa, size, Some(attrs))
    }

    /// Invalidates the VMID and frees every table.
    pub fn destroy(self, mm: &mut impl MmOps) {
        mm.dsb();
        mm.tlbi_vmalls12e1(self.vmid);
        mm.dsb();
        for i in 0..ENTRIES {
            let e = mm.read(self.root + 8 * i);
            if e & (VALID | TABLE_OR_PAGE) != VALID | TABLE_OR_PAGE {
                continue;
            }
            for j in 0..ENTRIES {
                let f = mm.read((e & OA) + 8 * j);
                if f & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE {
                    mm.free_page(f & OA);
                }
            }
            mm.free_page(e & OA);
        }
        mm.free_page(self.root);
    }

    /// The level-2 entry's address for `ipa`, when its level-2 table exists.
    fn l2_slot(&self, mm: &mut impl MmOps, ipa: u64) -> Option<u64> {
        let e = mm.read(self.root + 8 * index(ipa, 30));
        (e & VALID != 0).then(|| (e & OA) + 8 * index(ipa, 21))
    }

    /// The table that entry `i` of `parent` links, allocated and linked if the entry is
    /// invalid. Callers never ask where a block is.
    fn table(&mut self, mm: &mut impl MmOps, parent: u64, i: u64) -> Result<u64, Error> {
        let slot = parent + 8 * i;
        let e = mm.read(slot);
        if e & VALID != 0 {
            return Ok(e & OA);
        }
        let t = mm.zalloc_page().ok_or(Error::NoMemory)?;
        mm.write(slot, t | TABLE_OR_PAGE | VALID);
        Ok(t)
    }

    fn any_mapped(&self, mm: &mut impl MmOps, ipa: u64, end: u64) -> bool {
        let mut at = ipa;
        while at < end {
            let Some(slot) = self.l2_slot(mm, at) else {
                at = region_end(at, GIB, end);
                continue;
            };
            let next = region_end(at, BLOCK, end);
            let e = mm.read(slot);
            if e & VALID != 0 {
                if e & TABLE_OR_PAGE == 0 {
                    return true;
                }
                for p in (at..next).step_by(PAGE as usize) {
                    if mm.read((e & OA) + 8 * index(p, 12)) & VALID != 0 {
                        return true;
                    }
                }
            }
            at = next;
        }
        false
    }

    /// Unmap (`new` = `None`) or protect.
    fn change(&mut self, mm: &mut impl MmOps, ipa: u64, size: u64, new: Option<Attrs>) -> Result<(), Error> {
        let end = check(ipa, size)?;
        if size == 0 {
            return Ok(());
        }
        // A block covered in part is split: at most two (the first and the last), each
        // needing a table, allocated before anything changes.
        let mut spare = [None, None];
        for (k, at) in [ipa, end - 1].into_iter().enumerate() {
            let base = at & !(BLOCK - 1);
            let whole = ipa <= base && base + BLOCK <= end;
            if whole || (k == 1 && base <= ipa) || !self.is_block(mm, at) {
                continue;
            }
            match mm.zalloc_page() {
                Some(t) => spare[k] = Some(t),
                None => {
                    spare.into_iter().flatten().for_each(|t| mm.free_page(t));
                    return Err(Error::NoMemory);
                }
            }
        }
        let mut at = ipa;
        while at < end {
            let Some(slot) = self.l2_slot(mm, at) else {
                at = region_end(at, GIB, end);
                continue;
            };
            let next = region_end(at, BLOCK, end);
            let e = mm.read(slot);
            if e & VALID == 0 {
            } else if e & TABLE_OR_PAGE != 0 {
                self.change_pages(mm, e & OA, at, next, new);
            } else if next - at == BLOCK {
                let d = new.map(|a| (e & OA) | a.bits() | VALID);
                self.replace(mm, slot, at, e, d, true);
            } else {
                let t = spare.iter_mut().find_map(Option::take).expect("allocated above");
                self.split(mm, slot, t, e, at, next, new);
            }
            at = next;
        }
        spare.into_iter().flatten().for_each(|t| mm.free_page(t));
        mm.dsb();
        mm.tlbi_vmalle1(self.vmid);
        mm.dsb();
        Ok(())
    }

    fn is_block(&self, mm: &mut impl MmOps, ipa: u64) -> bool {
        self.l2_slot(mm, ipa).is_some_and(|s| mm.read(s) & (VALID | TABLE_OR_PAGE) == VALID)
    }

    /// Replaces the valid entry `old` at `slot` (translating from `ipa`) by `new` (`None`:
    /// invalid), with break-before-make where the architecture needs it.
    fn replace(&mut self, mm: &mut impl MmOps, slot: u64, ipa: u64, old: u64, new: Option<u64>, block: bool) {
        let bbm = new.is_none_or(|d| (d ^ old) & (TYPE | OA | TABLE_OR_PAGE) != 0);
        mm.write(slot, if bbm { 0 } else { new.expect("bbm otherwise") });
        mm.dsb();
        if !(cfg!(feature = "bug") && block && new.is_none()) {
            mm.tlbi_ipa(self.vmid, ipa);
        }
        mm.dsb();
        if let (true, Some(d)) = (bbm, new) {
            // Before the new entry, the combined stage 1+2 entries go too (as Linux's
            // __kvm_tlb_flush_vmid_ipa: IPAS2E1IS, DSB, VMALLE1IS, DSB).
            mm.tlbi_vmalle1(self.vmid);
            mm.dsb();
            mm.write(slot, d);
        }
    }

    /// Changes the valid pages of `[at, next)` in the level-3 table `l3`.
    fn change_pages(&mut self, mm: &mut impl MmOps, l3: u64, at: u64, next: u64, new: Option<Attrs>) {
        for p in (at..next).step_by(PAGE as usize) {
            let slot = l3 + 8 * index(p, 12);
            let e = mm.read(slot);
            if e & VALID != 0 {
                let d = new.map(|a| (e & OA) | a.bits() | TABLE_OR_PAGE | VALID);
                self.replace(mm, slot, p, e, d, false);
            }
        }
    }

    /// Splits the block `old` at `slot` into the pages of table `t`, those of `[at, next)`
    /// changed, then swaps the table in with break-before-make.
    #[allow(clippy::too_many_arguments)]
    fn split(
        &mut self,
        mm: &mut impl MmOps,
        slot: u64,
        t: u64,
        old: u64,
        at: u64,
        next: u64,
        new: Option<Attrs>,
    ) {
        let base = at & !(BLOCK - 1);
        for i in 0..ENTRIES {
            let p = base + i * PAGE;
            let oa = (old & OA) + i * PAGE;
            let attrs = old & !(OA | VALID | TABLE_OR_PAGE);
            let d = match new {
                _ if p < at || p >= next => oa | attrs | TABLE_OR_PAGE | VALID,
                Some(a) => oa | a.bits() | TABLE_OR_PAGE | VALID,
                None => 0,
            };
            mm.write(t + 8 * i, d);
        }
        self.replace(mm, slot, base, old, Some(t | TABLE_OR_PAGE | VALID), false);
    }
}

/// True when `[at, next)` can be one block mapping frames from `oa`.
const fn block_fits(at: u64, oa: u64, next: u64) -> bool {
    at.is_multiple_of(BLOCK) && oa.is_multiple_of(BLOCK) && next - at == BLOCK
}
