//! The reference model: an abstract specification of what the stage-2 code must do, kept as
//! simply as possible and independent of `mmu`'s tables. Per VM it holds the map
//! IPA page -> (frame, attributes) and the memslots; globally, the guest memory words stored.

use crate::layout::Layout;
use crate::machine::{Abort, AbortOn, AccessKind, AccessOutcome, Fault, FaultKind};
use crate::op::MAX_VMS;
use crate::violation::Mapping;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use mmu::addr::{level_size, IPA_LIMIT, PAGE_SIZE};
use mmu::{Ipa, Pa};

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
}

/// One VM of the model.
#[derive(Clone, Debug, Default)]
pub struct VmModel {
    /// IPA page -> mapping.
    pub map: BTreeMap<u64, Mapping>,
    /// Memslots by id.
    pub slots: Vec<Slot>,
}

impl VmModel {
    /// True when some page of the `level_size(level)` region around `ipa` is mapped.
    pub fn region_mapped(&self, ipa: u64, level: u8) -> bool {
        let start = ipa & !(level_size(level) - 1);
        self.map.range(start..start + level_size(level)).next().is_some()
    }

    /// The level at which a walk for unmapped `ipa` must fault: tables exist exactly where
    /// their region has a mapping, because emptied tables are freed.
    pub fn fault_level(&self, ipa: u64) -> u8 {
        if !self.region_mapped(ipa, 1) {
            1
        } else if !self.region_mapped(ipa, 2) {
            2
        } else {
            3
        }
    }

    /// The expected stage-2 result of a translation of `ipa` for `need`.
    fn translate(&self, ipa: u64, on: AbortOn, write: bool) -> Result<Mapping, Abort> {
        let page = ipa & !(PAGE_SIZE - 1);
        let abort = |kind, level| Abort { on, fault: Fault { kind, level }, ipa: Ipa(page) };
        let m = self.map.get(&page).ok_or_else(|| abort(FaultKind::Translation, self.fault_level(page)))?;
        let ok = match on {
            AbortOn::S1Walk => m.attrs.hap.readable(),
            AbortOn::Fetch => m.attrs.hap.readable() && !m.attrs.xn,
            AbortOn::Data if write => m.attrs.hap.writable(),
            AbortOn::Data => m.attrs.hap.readable(),
        };
        if ok {
            Ok(*m)
        } else {
            Err(abort(FaultKind::Permission, 3))
        }
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

    /// What a guest access must do: the stage-1 walk and the fetch of the stub read the stub
    /// page; then the access itself.
    pub fn expect_access(&self, vm: u8, ipa: u64, kind: AccessKind, stub: Ipa) -> AccessOutcome {
        let v = self.vm(vm);
        let write = matches!(kind, AccessKind::Write(_));
        // The stage-1 walk reads the stub page, then the stub's instructions are fetched.
        for on in [AbortOn::S1Walk, AbortOn::Fetch] {
            if let Err(abort) = v.translate(stub.0, on, false) {
                return AccessOutcome::Abort(abort);
            }
        }
        let m = match v.translate(ipa, AbortOn::Data, write) {
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
        if let Some(m) = self.vm(vm).map.get(&(ipa & !(PAGE_SIZE - 1))) {
            self.stored.insert(m.pa.0 | (ipa & (PAGE_SIZE - 1)), value);
        }
    }
}

/// The pages of `[ipa, ipa + size)` that `ioremap` maps: every page a byte of the range
/// touches (at least one when the start is not page aligned). `None` when the range leaves
/// the 40-bit space.
pub fn ioremap_pages(ipa: u64, size: u64) -> Option<(u64, u64)> {
    let end = ipa.checked_add(size)?.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
    let start = ipa & !(PAGE_SIZE - 1);
    let last = ipa.checked_add(size.max(1) - 1)?;
    (last < IPA_LIMIT).then_some((start, end.saturating_sub(start) / PAGE_SIZE))
}
