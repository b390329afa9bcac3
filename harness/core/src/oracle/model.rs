//! The reference model: an abstract specification of what stage-2 code must do, as simple
//! as possible and independent of any target's tables. Per VM it holds the map from IPA
//! ranges to (frame, protection), the memslots and the size of the vCPU cache; globally, the
//! guest memory words stored.
//!
//! From the architecture: permission and fault semantics of a translation. From the target:
//! nothing (the executor feeds it the ops and what they returned).

use crate::arch::walk::{Fault, FaultKind};
use crate::arch::{level_size, Geometry, Ipa, Pa, Prot, PAGE_SIZE};
use crate::layout::Layout;
use crate::machine::{Abort, AbortOn, AccessKind, AccessOutcome};
use crate::op::MAX_VMS;
use crate::violation::Mapping;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// A memslot as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Slot id.
    pub id: u16,
    /// First guest physical address.
    pub gpa: u64,
    /// Length in pages.
    pub pages: u64,
    /// Backing host virtual address.
    pub hva: u64,
}

impl Slot {
    /// The guest address backed by `hva`, if covered.
    pub fn gpa_of(&self, hva: u64) -> Option<u64> {
        let off = hva.checked_sub(self.hva)?;
        (off < self.pages * PAGE_SIZE).then(|| self.gpa + off)
    }
    /// As the target reports memslots: (id, gpa, pages, hva).
    pub const fn tuple(&self) -> (u16, u64, u64, u64) {
        (self.id, self.gpa, self.pages, self.hva)
    }
}

/// A mapped range `[start, end)`: page `start + k` maps frame `pa + k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// One past the last IPA.
    pub end: u64,
    /// The frame of the first page.
    pub pa: Pa,
    /// Protection of every page.
    pub prot: Prot,
}

/// One VM of the model.
#[derive(Clone, Debug, Default)]
pub struct VmModel {
    /// Runs by their first IPA; they never overlap.
    pub map: BTreeMap<u64, Run>,
    /// Memslots by id.
    pub slots: Vec<Slot>,
    /// Pages in the vCPU's memory cache.
    pub cache: u32,
}

impl VmModel {
    /// The mapping of the page holding `ipa`.
    pub fn get(&self, ipa: u64) -> Option<Mapping> {
        let page = ipa & !(PAGE_SIZE - 1);
        let (&start, run) = self.map.range(..=page).next_back()?;
        (page < run.end).then(|| Mapping { pa: run.pa.add(page - start), prot: run.prot })
    }

    /// Splits the run holding `at` (if any) so that a run starts at `at`.
    fn split_at(&mut self, at: u64) {
        let Some((&start, &run)) = self.map.range(..at).next_back() else { return };
        if at < run.end {
            self.map.insert(start, Run { end: at, ..run });
            self.map.insert(at, Run { pa: run.pa.add(at - start), ..run });
        }
    }

    /// Unmaps `[start, end)`.
    pub fn unset(&mut self, start: u64, end: u64) {
        self.unset_counting(start, end, &mut |_, _| {});
    }

    /// [`VmModel::unset`], calling `removed` with each run that goes: its start and end.
    pub fn unset_counting(&mut self, start: u64, end: u64, removed: &mut dyn FnMut(u64, u64)) {
        self.split_at(start);
        self.split_at(end);
        while let Some((&k, r)) = self.map.range(start..end).next() {
            removed(k, r.end);
            self.map.remove(&k);
        }
    }

    /// Maps `[start, end)` to frames from `pa` with `prot`, replacing what was there.
    pub fn set(&mut self, start: u64, end: u64, pa: Pa, prot: Prot) {
        self.unset(start, end);
        self.map.insert(start, Run { end, pa, prot });
    }

    /// Gives every mapped page of `[start, end)` the protection `prot`.
    pub fn protect(&mut self, start: u64, end: u64, prot: Prot) {
        self.split_at(start);
        self.split_at(end);
        for (_, run) in self.map.range_mut(start..end) {
            run.prot = prot;
        }
    }

    /// True when some page of `[start, end)` is mapped.
    pub fn any_mapped(&self, start: u64, end: u64) -> bool {
        self.first_mapped(start, end).is_some()
    }

    /// The first mapped IPA of `[start, end)`.
    pub fn first_mapped(&self, start: u64, end: u64) -> Option<u64> {
        if let Some((_, run)) = self.map.range(..=start).next_back() {
            if start < run.end {
                return Some(start);
            }
        }
        self.map.range(start..end).next().map(|(&k, _)| k)
    }

    /// True when some page of the `level_size(level)` region around `ipa` is mapped.
    pub fn region_mapped(&self, ipa: u64, level: u8) -> bool {
        let start = ipa & !(level_size(level) - 1);
        self.any_mapped(start, start + level_size(level))
    }

    /// Bytes mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.map.iter().map(|(&k, r)| r.end - k).sum()
    }

    /// The level at which a walk for unmapped `ipa` must fault when the target frees
    /// emptied tables: tables exist exactly where their region has a mapping.
    pub fn fault_level(&self, g: &Geometry, ipa: u64) -> u8 {
        (g.start_level..3).find(|&l| !self.region_mapped(ipa, l)).unwrap_or(3)
    }

    /// The expected stage-2 result of a translation of `ipa`.
    fn translate(
        &self,
        g: &Geometry,
        rules: Rules,
        ipa: u64,
        on: AbortOn,
        write: bool,
    ) -> Result<Mapping, Abort> {
        let page = ipa & !(PAGE_SIZE - 1);
        let abort = |kind, level| Abort { on, fault: Fault { kind, level }, ipa: Ipa(page) };
        let level = if rules.exact_levels { self.fault_level(g, page) } else { FAULT_LEVEL_UNKNOWN };
        let m = self.get(page).ok_or_else(|| abort(FaultKind::Translation, level))?;
        let ok = match on {
            AbortOn::S1Walk => m.prot.read,
            AbortOn::Fetch => m.prot.read && m.prot.exec,
            AbortOn::Data if write => m.prot.write,
            AbortOn::Data => m.prot.read,
        };
        if ok {
            Ok(m)
        } else {
            Err(abort(FaultKind::Permission, if rules.blocks { LEAF_LEVEL_UNKNOWN } else { 3 }))
        }
    }
}

/// What the model may assume about where a target's tables fault.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// The target frees emptied tables: a translation fault comes at [`VmModel::fault_level`].
    pub exact_levels: bool,
    /// The target may map blocks: a permission fault may come at a block's level.
    pub blocks: bool,
}

/// The level the model reports for a translation fault it cannot place (a target that
/// keeps emptied tables): comparisons treat it as any level.
pub const FAULT_LEVEL_UNKNOWN: u8 = 0xff;
/// The level the model reports for a permission fault: the leaf's, which may be a block.
pub const LEAF_LEVEL_UNKNOWN: u8 = 0xfe;

/// True when `got` is what `expected` allows: the same outcome, where an abort's level may
/// be any level when the model does not know it.
pub fn outcome_matches(expected: &AccessOutcome, got: &AccessOutcome, blocks: bool) -> bool {
    match (expected, got) {
        (AccessOutcome::Abort(e), AccessOutcome::Abort(g)) => {
            let level_ok = e.fault.level == g.fault.level
                || e.fault.level == FAULT_LEVEL_UNKNOWN
                || (e.fault.level == LEAF_LEVEL_UNKNOWN && (g.fault.level == 3 || blocks));
            e.on == g.on && e.ipa == g.ipa && e.fault.kind == g.fault.kind && level_ok
        }
        _ => expected == got,
    }
}

/// The whole model.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Live VMs.
    pub vms: [Option<VmModel>; MAX_VMS],
    /// Guest memory words stored so far (by PA); others hold their signature.
    stored: BTreeMap<u64, u32>,
}

impl Model {
    /// Forgets everything.
    pub fn reset(&mut self) {
        self.vms = Default::default();
        self.stored.clear();
    }

    /// The live VM `vm`.
    pub fn vm(&self, vm: u8) -> &VmModel {
        self.vms[vm as usize].as_ref().expect("the executor only asks about live VMs")
    }

    /// The live VM `vm`, mutably.
    pub fn vm_mut(&mut self, vm: u8) -> &mut VmModel {
        self.vms[vm as usize].as_mut().expect("the executor only asks about live VMs")
    }

    /// What a guest access must do: the guest's stage-1 walk (ARMv7: its table is in the
    /// stub page) and the fetch of the stub read the stub page; then the access itself.
    pub fn expect_access(
        &self,
        g: &Geometry,
        rules: Rules,
        vm: u8,
        ipa: u64,
        kind: AccessKind,
        stub: Ipa,
    ) -> AccessOutcome {
        let v = self.vm(vm);
        let write = matches!(kind, AccessKind::Write(_));
        // The stub page is mapped read-only and executable at creation and no op may touch
        // it, so the stage-1 walk and the fetch always succeed in the model.
        debug_assert!(v.get(stub.0).is_some_and(|m| m.prot.read && m.prot.exec));
        let m = match v.translate(g, rules, ipa, AbortOn::Data, write) {
            Err(abort) => return AccessOutcome::Abort(abort),
            Ok(m) => m,
        };
        let pa = m.pa.0 | (ipa & (PAGE_SIZE - 1));
        match kind {
            AccessKind::Read => AccessOutcome::Read(self.load(Pa(pa))),
            AccessKind::Write(_) => AccessOutcome::Written,
        }
    }

    /// The word a load at `pa` returns.
    pub fn load(&self, pa: Pa) -> u32 {
        self.stored.get(&pa.0).copied().unwrap_or(Layout::signature(pa))
    }

    /// Records a store that the model predicted and the machine performed.
    pub fn store(&mut self, vm: u8, ipa: u64, value: u32) {
        if let Some(m) = self.vm(vm).get(ipa) {
            self.stored.insert(m.pa.0 | (ipa & (PAGE_SIZE - 1)), value);
        }
    }
}

/// The pages of `[ipa, ipa + size)` that `ioremap` maps: every page a byte of the range
/// touches (at least one when the start is not page aligned). `None` when the range leaves
/// the space below `limit`.
pub fn ioremap_pages(ipa: u64, size: u64, limit: u64) -> Option<(u64, u64)> {
    let end = ipa.checked_add(size)?.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
    let start = ipa & !(PAGE_SIZE - 1);
    let last = ipa.checked_add(size.max(1) - 1)?;
    (last < limit).then_some((start, end.saturating_sub(start) / PAGE_SIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_and_protect() {
        let mut v = VmModel::default();
        v.set(0x20_0000, 0x40_0000, Pa(0x4400_0000), Prot::RAM_RW);
        assert_eq!(v.get(0x20_1234).map(|m| m.pa), Some(Pa(0x4400_1000)));
        v.unset(0x20_1000, 0x20_2000);
        assert_eq!(v.get(0x20_1000), None);
        assert_eq!(v.get(0x20_2000).map(|m| m.pa), Some(Pa(0x4400_2000)));
        v.protect(0x20_0000, 0x20_3000, Prot::RAM_RO);
        assert_eq!(v.get(0x20_0000).map(|m| m.prot), Some(Prot::RAM_RO));
        assert_eq!(v.get(0x20_3000).map(|m| m.prot), Some(Prot::RAM_RW));
        assert_eq!(v.mapped_bytes(), 0x20_0000 - 0x1000);
        assert!(v.any_mapped(0x3f_f000, 0x40_0000) && !v.any_mapped(0x40_0000, 0x50_0000));
        let g = Geometry::ARMV7_40BIT;
        assert_eq!(v.fault_level(&g, 0x20_1000), 3);
        assert_eq!(v.fault_level(&g, 0x60_0000), 2);
        assert_eq!(v.fault_level(&g, 0x4000_0000), 1);
    }
}
