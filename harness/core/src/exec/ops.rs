//! Each op's results as the reference model allows them, and how the model changes: the
//! executor's per-op checks (the op loop and dispatch are in the parent module).

use super::{Executor, CACHE_CAPACITY, FAULT_TOPUP_MIN, MAX_MEMSLOTS};
use crate::arch::{Ipa, Pa, Prot, Vttbr, PAGE_SIZE};
use crate::feedback::{bucket, Family};
use crate::layout::STUB_IPA;
use crate::machine::Machine;
use crate::op::Op;
use crate::oracle::model::{ioremap_pages, Slot, VmModel};
use crate::result::{Errno, OpResult, Reject, ResultSet};
use crate::target::Target;
use alloc::vec::Vec;

impl<M: Machine, T: Target> Executor<M, T> {
    pub(super) fn create_vm(&mut self, vm: u8) -> OpResult {
        if self.live[vm as usize] {
            return OpResult::Rejected(Reject::VmExists);
        }
        // A failed creation tears down what it built, like a destroy.
        self.host.destroying = Some(vm);
        let r = self.call(&Op::CreateVm { vm });
        self.host.sync();
        self.host.destroying = None;
        self.expect(ResultSet::OK, &r);
        if r != OpResult::Ok || self.target.root(vm).is_none() {
            // The error path must undo everything.
            self.host.forget_vm(vm);
            self.host.check_leaks(&self.live, &[], Some(vm));
            return r;
        }
        let mut model = VmModel::default();
        let stub = self.config.layout.stub_frame();
        model.set(STUB_IPA.0, STUB_IPA.0 + PAGE_SIZE, stub, Prot::RAM_RO);
        self.model.vms[vm as usize] = Some(model);
        self.live[vm as usize] = true;
        self.entered[vm as usize] = None;
        self.vmid_state[vm as usize] = (Vttbr(0), 0);
        self.changed.push((vm, STUB_IPA.0, STUB_IPA.0 + PAGE_SIZE));
        if self.offers(Op::Topup { vm: 0, min: 0, max: 0 }) {
            // kvm_arch_init_vm maps the stub through the fault path.
            let links = self.host.links_this_op;
            self.check_cache(vm, CACHE_CAPACITY.saturating_sub(links));
        }
        if !self.offers(Op::UpdateVmid { vm: 0 }) {
            // A fixed VMID, given at creation.
            self.after_vmid_op(vm);
        }
        r
    }

    pub(super) fn destroy_vm(&mut self, vm: u8) -> OpResult {
        self.verify_all(vm);
        self.host.destroying = Some(vm);
        let r = self.call(&Op::DestroyVm { vm });
        self.host.sync();
        self.host.destroying = None;
        self.host.forget_vm(vm);
        self.live[vm as usize] = false;
        self.entered[vm as usize] = None;
        self.host.check_leaks(&self.live, &[], Some(vm));
        self.model.vms[vm as usize] = None;
        self.expect(ResultSet::OK, &r);
        r
    }

    pub(super) fn add_memslot(&mut self, vm: u8, s: Slot) -> OpResult {
        let bytes = s.pages.checked_mul(PAGE_SIZE);
        if bytes.is_some_and(|b| touches_stub(s.gpa, b.div_ceil(PAGE_SIZE).max(1))) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
        let r = self.call(&Op::AddMemslot { vm, slot: s.id, gpa: s.gpa, pages: s.pages, hva: s.hva });
        // The specification: every rule the slot breaks is an acceptable error.
        let v = self.model.vm(vm);
        let mut allowed = ResultSet(0);
        if !s.gpa.is_multiple_of(PAGE_SIZE) || !s.hva.is_multiple_of(PAGE_SIZE) {
            allowed = allowed.or_err(Errno::Misaligned);
        }
        let gpa_end = bytes.and_then(|b| s.gpa.checked_add(b));
        let limit = self.host.geometry().ipa_limit();
        if s.pages == 0
            || gpa_end.is_none_or(|e| e > limit)
            || bytes.and_then(|b| s.hva.checked_add(b)).is_none()
        {
            allowed = allowed.or_err(Errno::OutOfRange);
        }
        let end = gpa_end.unwrap_or(u64::MAX);
        if v.slots.iter().any(|o| o.id == s.id || (s.gpa < o.gpa + o.pages * PAGE_SIZE && o.gpa < end)) {
            allowed = allowed.or_err(Errno::MemslotOverlap);
        }
        if v.slots.len() == MAX_MEMSLOTS {
            allowed = allowed.or_err(Errno::NoMemslotSpace);
        }
        self.expect(if allowed.0 == 0 { ResultSet::OK } else { allowed }, &r);
        if self.host.feedback.on(Family::Memslots) {
            let slots = &self.model.vm(vm).slots;
            let overlap = allowed.allows(&OpResult::Err(Errno::MemslotOverlap));
            let adjacent =
                slots.iter().any(|o| o.gpa + o.pages * PAGE_SIZE == s.gpa || Some(o.gpa) == gpa_end);
            let at = slots.iter().take_while(|o| o.id < s.id).count();
            let position = if slots.is_empty() {
                0
            } else if at == 0 {
                1
            } else if at == slots.len() {
                2
            } else {
                3
            };
            let i = (usize::from(overlap) + 2 * usize::from(adjacent)) * 8
                + position * 2
                + usize::from(r == OpResult::Ok);
            // Another slot in one of its 2 MiB regions: their pages share a level-3 table.
            let region = |a: u64| a >> 21;
            let last = region(end.saturating_sub(1));
            let shares = slots.iter().any(|o| {
                let o_last = region((o.gpa + o.pages * PAGE_SIZE).saturating_sub(1));
                region(o.gpa) <= last && region(s.gpa) <= o_last
            });
            self.host.feedback.hit(Family::Memslots, i);
            self.host.feedback.hit(Family::Memslots, 48 + bucket(slots.len() as u64, 6));
            self.host
                .feedback
                .hit(Family::Memslots, 64 + 2 * usize::from(shares) + usize::from(r == OpResult::Ok));
        }
        if r == OpResult::Ok {
            let slots = &mut self.model.vm_mut(vm).slots;
            let at = slots.iter().take_while(|o| o.id < s.id).count();
            slots.insert(at, s);
        }
        self.check_memslots(vm);
        r
    }

    /// Later kernels unmap a deleted slot's range (`kvm_arch_flush_shadow_memslot`).
    pub(super) fn remove_memslot(&mut self, vm: u8, slot: u16) -> OpResult {
        let r = self.call(&Op::RemoveMemslot { vm, slot });
        let known = self.model.vm(vm).slots.iter().position(|s| s.id == slot);
        let allowed = if known.is_some() { ResultSet::OK } else { ResultSet::err(Errno::UnknownMemslot) };
        self.expect(allowed, &r);
        let n = self.model.vm(vm).slots.len();
        let position = match known {
            None => 4,
            Some(_) if n == 1 => 3,
            Some(0) => 0,
            Some(i) if i + 1 == n => 2,
            Some(_) => 1,
        };
        self.host.feedback.hit(Family::Memslots, 32 + position * 2 + usize::from(r == OpResult::Ok));
        if let (OpResult::Ok, Some(i)) = (r, known) {
            let s = self.model.vm_mut(vm).slots.remove(i);
            self.unmap_model(vm, s.gpa, s.gpa + s.pages * PAGE_SIZE);
            // Whether tables stay behind in the slot's first and last 2 MiB regions.
            let v = self.model.vm(vm);
            let last = (s.gpa + s.pages * PAGE_SIZE).saturating_sub(1);
            let kept = usize::from(v.region_mapped(s.gpa, 2)) + usize::from(v.region_mapped(last, 2));
            self.host.feedback.hit(Family::Memslots, 68 + kept);
            self.host.feedback.slot_deleted(vm, s.hva, s.pages * PAGE_SIZE, s.gpa);
        }
        self.check_memslots(vm);
        r
    }

    /// The fault path (`user_mem_abort`): topup, then one page.
    pub(super) fn map(&mut self, op: &Op, vm: u8, ipa: u64, pa: u64, writable: bool) -> OpResult {
        if touches_stub(ipa, 1) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
        if !self.config.layout.in_guest_window(Pa(pa), 1) {
            return self.outside_windows(op, vm, ipa, pa, 1, true);
        }
        let before = self.model.vm(vm).cache;
        let r = self.call(op);
        let mut allowed = page_arg(ipa, self.host.geometry().ipa_limit());
        if !pa.is_multiple_of(PAGE_SIZE) {
            allowed = if allowed == ResultSet::OK { ResultSet(0) } else { allowed };
            allowed = allowed.or_err(Errno::Misaligned);
        }
        self.expect(allowed, &r);
        let after = match r {
            OpResult::Ok => {
                let prot = if writable { Prot::RAM_RW } else { Prot::RAM_RO };
                self.model.vm_mut(vm).set(ipa, ipa + PAGE_SIZE, Pa(pa), prot);
                self.changed.push((vm, ipa, ipa + PAGE_SIZE));
                let topped = if before < FAULT_TOPUP_MIN { CACHE_CAPACITY } else { before };
                topped.saturating_sub(self.host.links_this_op)
            }
            OpResult::Err(Errno::NoMemory) => before + self.host.allocs_this_op,
            _ => before,
        };
        self.check_cache(vm, after);
        r
    }

    pub(super) fn ioremap(&mut self, op: &Op, vm: u8, ipa: u64, pa: u64, size: u64) -> OpResult {
        let limit = self.host.geometry().ipa_limit();
        let Some((first, pages)) = ioremap_pages(ipa, size, limit) else {
            let r = self.call(op);
            self.expect(ResultSet::err(Errno::OutOfRange), &r);
            return r;
        };
        if touches_stub(first, pages) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
        if !self.config.layout.in_device_window(Pa(pa), pages.max(1)) {
            return self.outside_windows(op, vm, first, pa, pages, true);
        }
        let r = self.call(op);
        // Pages are mapped in order until one is already mapped (EFAULT).
        let v = self.model.vm(vm);
        let frame = pa & !(PAGE_SIZE - 1);
        let clash = (0..pages).position(|k| v.get(first + k * PAGE_SIZE).is_some()).map(|k| k as u64);
        self.expect(if clash.is_some() { ResultSet::err(Errno::Fault) } else { ResultSet::OK }, &r);
        let mapped = match r {
            OpResult::Ok => pages,
            OpResult::Err(Errno::Fault) => clash.unwrap_or(0),
            // After ENOMEM, adopt the prefix the tables hold; verification checks the rest.
            _ => {
                let root = self.target.root(vm).expect("live");
                let g = *self.host.geometry();
                let host = &mut self.host;
                (0..clash.unwrap_or(pages))
                    .take_while(|k| {
                        let leaf = crate::arch::walk::translate(
                            &g,
                            &mut |a| host.peek(a),
                            root,
                            Ipa(first + k * PAGE_SIZE),
                        );
                        leaf.is_ok_and(|l| l.pa == Pa(frame + k * PAGE_SIZE))
                    })
                    .count() as u64
            }
        };
        if mapped > 0 {
            self.model.vm_mut(vm).set(first, first + mapped * PAGE_SIZE, Pa(frame), Prot::DEVICE_RW);
        }
        self.changed.push((vm, first, first + pages * PAGE_SIZE));
        r
    }

    /// State feedback of an HVA op (`which`: 0 `set_spte_hva`, 1 `unmap_hva`, 2
    /// `unmap_hva_range`) before it changes the model: how many live slots hold `hva`,
    /// whether a slot deleted earlier held it, and whether that slot's 2 MiB region (or the
    /// live slot's) has a mapping, so tables are there to be written.
    pub(super) fn hva_feature(&mut self, vm: u8, hva: u64, which: usize) {
        if !self.host.feedback.on(Family::Memslots) {
            return;
        }
        let v = self.model.vm(vm);
        // No allocation: this runs for every HVA op of a campaign.
        let live = v.slots.iter().filter_map(|s| s.gpa_of(hva));
        let deleted = self.host.feedback.deleted_gpa(vm, hva);
        let mapped = live.clone().chain(deleted).any(|g| v.region_mapped(g, 2));
        let i = 72
            + which * 12
            + live.take(2).count() * 4
            + usize::from(deleted.is_some()) * 2
            + usize::from(mapped);
        self.host.feedback.hit(Family::Memslots, i);
    }

    /// State feedback of a range op over `[start, end)` of `vm`, before the model changes
    /// (`which` as [`Feedback::range`](crate::feedback::Feedback::range) numbers them).
    fn range_feature(&mut self, vm: u8, which: usize, start: u64, end: u64) {
        let end = end.min(self.host.geometry().ipa_limit());
        if !self.host.feedback.on(Family::Ranges) || start >= end {
            return;
        }
        let v = self.model.vm(vm);
        let next = (start | ((2 << 20) - 1)) + 1;
        let beyond = next < end && v.any_mapped(next, end);
        let first = v.region_mapped(start, 2);
        self.host.feedback.range(which, start, end, first, beyond);
    }

    pub(super) fn unmap_hva_range(&mut self, op: &Op, vm: u8, start: u64, end: u64) -> OpResult {
        self.hva_feature(vm, start, 2);
        let r = self.call(op);
        let aligned = start.is_multiple_of(PAGE_SIZE) && end.is_multiple_of(PAGE_SIZE);
        self.expect(if aligned { ResultSet::OK } else { ResultSet::err(Errno::Misaligned) }, &r);
        if r != OpResult::Ok {
            return r;
        }
        let ranges: Vec<(u64, u64)> = self
            .model
            .vm(vm)
            .slots
            .iter()
            .filter_map(|s| {
                let lo = start.max(s.hva);
                let hi = end.min(s.hva.saturating_add(s.pages * PAGE_SIZE));
                (lo < hi).then(|| (s.gpa + (lo - s.hva), s.gpa + (hi - s.hva)))
            })
            .collect();
        for (lo, hi) in ranges {
            self.range_feature(vm, 0, lo, hi);
            self.unmap_model(vm, lo, hi);
        }
        r
    }

    pub(super) fn set_spte_hva(&mut self, op: &Op, vm: u8, hva: u64, pa: u64) -> OpResult {
        if !self.config.layout.in_guest_window(Pa(pa), 1) {
            // The pages this would remap are the slots', not known here: no model range.
            return self.outside_windows(op, vm, 0, pa, 1, true);
        }
        let r = self.call(op);
        let aligned = pa.is_multiple_of(PAGE_SIZE);
        self.expect(if aligned { ResultSet::OK } else { ResultSet::err(Errno::Misaligned) }, &r);
        if r != OpResult::Ok {
            return r;
        }
        self.hva_feature(vm, hva, 0);
        // Existing tables are reused, none are built: a page is (re)mapped, read-only, exactly
        // when something in its 2 MiB region is mapped.
        let v = self.model.vm_mut(vm);
        let gpas: Vec<u64> =
            v.slots.iter().filter_map(|s| s.gpa_of(hva)).map(|g| g & !(PAGE_SIZE - 1)).collect();
        for gpa in gpas {
            if v.region_mapped(gpa, 2) {
                v.set(gpa, gpa + PAGE_SIZE, Pa(pa), Prot::RAM_RO);
            }
            self.changed.push((vm, gpa, gpa + PAGE_SIZE));
        }
        r
    }

    /// A range op (`map_range`): every page of the range is mapped, or (for a target that
    /// refuses live changes needing break-before-make) nothing changes.
    pub(super) fn map_range(
        &mut self,
        op: &Op,
        vm: u8,
        ipa: u64,
        pa: u64,
        size: u64,
        prot: Prot,
    ) -> OpResult {
        let limit = self.host.geometry().ipa_limit();
        let pages = size.div_ceil(PAGE_SIZE);
        if touches_stub(ipa, pages) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
        let window = match prot.mem {
            crate::arch::Mem::Normal => self.config.layout.in_guest_window(Pa(pa), pages),
            crate::arch::Mem::Device => self.config.layout.in_device_window(Pa(pa), pages),
        };
        if !window {
            return self.outside_windows(op, vm, ipa, pa, pages, size.is_multiple_of(PAGE_SIZE));
        }
        self.range_feature(vm, 3, ipa, ipa.saturating_add(size));
        let r = self.call(op);
        let allowed = range_arg(ipa, size, limit, pa);
        let live = self.model.vm(vm).any_mapped(ipa, ipa.saturating_add(size));
        self.expect(
            if allowed == ResultSet::OK && live { allowed.or_err(Errno::BbmRefused) } else { allowed },
            &r,
        );
        if r == OpResult::Ok && size > 0 {
            self.model.vm_mut(vm).set(ipa, ipa + size, Pa(pa), prot);
        }
        self.changed.push((vm, ipa, ipa.saturating_add(size).min(limit)));
        r
    }

    /// `unmap_range` (`prot` = `None`) and `protect_range`.
    pub(super) fn range_op(&mut self, op: &Op, vm: u8, ipa: u64, size: u64, prot: Option<Prot>) -> OpResult {
        let limit = self.host.geometry().ipa_limit();
        if touches_stub(ipa, size.div_ceil(PAGE_SIZE)) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
        self.range_feature(vm, 1 + usize::from(prot.is_some()), ipa, ipa.saturating_add(size));
        let r = self.call(op);
        let allowed = range_arg(ipa, size, limit, 0);
        let live = self.model.vm(vm).any_mapped(ipa, ipa.saturating_add(size));
        self.expect(
            if allowed == ResultSet::OK && live { allowed.or_err(Errno::BbmRefused) } else { allowed },
            &r,
        );
        if r == OpResult::Ok && size > 0 {
            match prot {
                None => self.unmap_model(vm, ipa, ipa + size),
                Some(p) => {
                    self.model.vm_mut(vm).protect(ipa, ipa + size, p);
                    self.changed.push((vm, ipa, ipa + size));
                }
            }
        }
        self.changed.push((vm, ipa, ipa.saturating_add(size).min(limit)));
        r
    }

    /// Frames outside the executor's windows. They are refused, except in a simulation when
    /// they reach past the profile's physical address space: there only the target's own
    /// checks decide, and it must refuse them (a misaligned frame, IPA or length, where
    /// `size_aligned` is false, may be refused as such).
    /// The model does not change; the pages from `ipa` are compared with it afterwards, so a
    /// target that maps such a frame anyway shows as a mismatch too.
    pub(super) fn outside_windows(
        &mut self,
        op: &Op,
        vm: u8,
        ipa: u64,
        pa: u64,
        pages: u64,
        size_aligned: bool,
    ) -> OpResult {
        // The frames the op maps start at the page of `pa` (an op of no page is judged by
        // its first frame, and may also succeed: it maps nothing).
        let end = pages.max(1).checked_mul(PAGE_SIZE).and_then(|b| (pa & !(PAGE_SIZE - 1)).checked_add(b));
        let beyond = end.is_none_or(|e| e > self.host.geometry().pa_limit());
        if !beyond || !self.host.machine.simulated() {
            return OpResult::Rejected(Reject::PaOutsideWindow);
        }
        let r = self.call(op);
        let mut allowed = ResultSet::err(Errno::OutOfRange);
        if pages == 0 {
            allowed = ResultSet(allowed.0 | ResultSet::OK.0);
        }
        if !pa.is_multiple_of(PAGE_SIZE) || !ipa.is_multiple_of(PAGE_SIZE) || !size_aligned {
            allowed = allowed.or_err(Errno::Misaligned);
        }
        if ipa >= self.host.geometry().ipa_limit() {
            allowed = allowed.or_err(Errno::OutOfRange);
        }
        self.expect(allowed, &r);
        let limit = self.host.geometry().ipa_limit();
        self.changed.push((vm, ipa, ipa.saturating_add(pages.saturating_mul(PAGE_SIZE)).min(limit)));
        r
    }

    pub(super) fn unmap_model(&mut self, vm: u8, start: u64, end: u64) {
        let (fb, model) = (&mut self.host.feedback, &mut self.model);
        if fb.on(Family::Outcome) {
            model.vm_mut(vm).unset_counting(start, end, &mut |s, e| fb.removed(s, e));
        } else {
            model.vm_mut(vm).unset(start, end);
        }
        self.changed.push((vm, start, end));
    }
}

/// The allowed results for an op on the page at `ipa`: caller mistakes are errors.
pub(super) fn page_arg(ipa: u64, limit: u64) -> ResultSet {
    if !ipa.is_multiple_of(PAGE_SIZE) {
        ResultSet::err(Errno::Misaligned)
    } else if ipa >= limit {
        ResultSet::err(Errno::OutOfRange)
    } else {
        ResultSet::OK
    }
}

/// The allowed results for a range op on `[ipa, ipa + size)` (and frames from `pa`).
pub(super) fn range_arg(ipa: u64, size: u64, limit: u64, pa: u64) -> ResultSet {
    let mut allowed = ResultSet(0);
    if !ipa.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) || !pa.is_multiple_of(PAGE_SIZE) {
        allowed = allowed.or_err(Errno::Misaligned);
    }
    if ipa.checked_add(size).is_none_or(|e| e > limit) {
        allowed = allowed.or_err(Errno::OutOfRange);
    }
    if allowed.0 == 0 {
        ResultSet::OK
    } else {
        allowed
    }
}

/// True when `pages` pages from the page of `ipa` include the guest stub's page.
pub(super) fn touches_stub(ipa: u64, pages: u64) -> bool {
    let start = ipa & !(PAGE_SIZE - 1);
    start <= STUB_IPA.0 && STUB_IPA.0 - start < pages.saturating_mul(PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_and_range_arguments() {
        let limit = 1 << 40;
        assert_eq!(page_arg(0x1000, limit), ResultSet::OK);
        assert_eq!(page_arg(0x1001, limit), ResultSet::err(Errno::Misaligned));
        assert_eq!(page_arg(limit, limit), ResultSet::err(Errno::OutOfRange));
        assert_eq!(page_arg(limit - PAGE_SIZE, limit), ResultSet::OK);
        assert_eq!(range_arg(0, 0x2000, limit, 0x4400_0000), ResultSet::OK);
        assert_eq!(range_arg(limit - 0x1000, 0x1000, limit, 0), ResultSet::OK, "ends exactly at the limit");
        assert_eq!(range_arg(limit - 0x1000, 0x2000, limit, 0), ResultSet::err(Errno::OutOfRange));
        assert_eq!(range_arg(0x800, 0x1000, limit, 0), ResultSet::err(Errno::Misaligned));
        let both = range_arg(u64::MAX - 0xfff, 0x1001, limit, 0);
        assert!(
            both.allows(&OpResult::Err(Errno::Misaligned)) && both.allows(&OpResult::Err(Errno::OutOfRange))
        );
    }

    #[test]
    fn the_stub_page_is_reserved() {
        assert!(touches_stub(STUB_IPA.0, 1));
        assert!(touches_stub(STUB_IPA.0 + 0xfff, 1));
        assert!(touches_stub(STUB_IPA.0 - PAGE_SIZE, 2));
        assert!(!touches_stub(STUB_IPA.0 - PAGE_SIZE, 1));
        assert!(!touches_stub(STUB_IPA.0 + PAGE_SIZE, 100));
    }
}
