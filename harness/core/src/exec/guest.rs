//! Guest entry and accesses, VMID changes, and the end-of-op comparisons of the tables and
//! the target's state with the reference model.

use super::ops::touches_stub;
use super::Executor;
use crate::arch::{Ipa, Vttbr, PAGE_SIZE};
use crate::event::Event;
use crate::feedback::Family;
use crate::layout::STUB_IPA;
use crate::machine::{AccessKind, AccessOutcome, Machine};
use crate::op::{Op, MAX_VMS};
use crate::oracle::compare::{self, Judge};
use crate::oracle::model::{outcome_matches, Slot};
use crate::oracle::vmid::check_vttbr;
use crate::result::{OpResult, Reject, ResultSet};
use crate::target::Target;
use crate::violation::{Detail, StateProblem};
use alloc::vec::Vec;

impl<M: Machine, T: Target> Executor<M, T> {
    /// After a VMID op (or creation, for a fixed VMID): a rollover forces every vCPU out of
    /// its guest (`force_vm_exit`); a (re)assignment, even of the same number in a new
    /// generation, goes to the VMID oracle.
    pub(super) fn after_vmid_op(&mut self, vm: u8) {
        let live = self.live.iter().filter(|&&l| l).count();
        if self.host.vmids.generation() != self.generation {
            self.generation = self.host.vmids.generation();
            self.entered = [None; MAX_VMS];
            self.host.feedback.hit(Family::Vmid, 2 * 9 + live);
        }
        let now = (self.target.vttbr(vm), self.target.vmid_generation(vm));
        let before = self.vmid_state[vm as usize];
        if now == before {
            return;
        }
        let first = before.0 == Vttbr(0);
        self.host.feedback.hit(Family::Vmid, usize::from(!first) * 9 + live);
        self.vmid_state[vm as usize] = now;
        let vttbr = now.0;
        self.host.event(Event::Vttbr { vm, vttbr });
        let vmid = vttbr.vmid_field();
        self.host.set_vmid(vm, vmid);
        if let Some(d) = self.host.vmids.assigned(vm, vmid) {
            self.violation(d);
        }
        self.check_vttbr(vm, vttbr);
    }

    pub(super) fn check_vttbr(&mut self, vm: u8, vttbr: Vttbr) {
        let Some(root) = self.target.root(vm) else { return };
        if let Some(d) = check_vttbr(self.host.geometry(), vm, vttbr, root, self.config.vmid_bits) {
            self.violation(d);
        }
    }

    pub(super) fn expect_vttbr(&mut self, vm: u8, r: &OpResult) {
        let root = self.target.root(vm);
        let g = *self.host.geometry();
        if !matches!(r, OpResult::Vttbr(v) if Some(g.vttbr_root(*v)) == root) {
            self.violation(Detail::WrongResult { expected: ResultSet::OK, got: *r });
        }
    }

    /// The world switch (`kvm_arch_vcpu_ioctl_run`), then the oracles that guard guest entry.
    pub(super) fn enter(&mut self, vm: u8) -> OpResult {
        let r = if self.offers(Op::Enter { vm: 0 }) { self.call(&Op::Enter { vm }) } else { OpResult::Ok };
        self.after_vmid_op(vm);
        let vttbr = self.target.vttbr(vm);
        let r = if r == OpResult::Ok { OpResult::Vttbr(vttbr) } else { r };
        self.expect_vttbr(vm, &r);
        let mut found = Vec::new();
        self.host.vmids.runs(vm, vttbr.vmid_field(), &self.live, &mut found);
        for d in found {
            self.violation(d);
        }
        self.check_vttbr(vm, vttbr);
        self.host.check_guest_runs(vm);
        self.entered[vm as usize] = Some(vttbr);
        r
    }

    pub(super) fn access(&mut self, vm: u8, ipa: u64, kind: AccessKind) -> OpResult {
        let g = *self.host.geometry();
        if !ipa.is_multiple_of(4) || ipa >= g.ipa_limit() || ipa >= self.config.guest.reach(g.profile) {
            return OpResult::Rejected(Reject::BadAccessAddress);
        }
        if touches_stub(ipa & !(PAGE_SIZE - 1), 1) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
        let vttbr = match self.entered[vm as usize] {
            Some(vttbr) => {
                self.host.check_guest_runs(vm);
                vttbr
            }
            None => match self.enter(vm) {
                OpResult::Vttbr(v) => v,
                other => return other,
            },
        };
        let (outcome, fresh) = self.host.machine.guest_access(vttbr, Ipa(ipa), kind);
        let info = self.target.info();
        let rules =
            crate::oracle::model::Rules { exact_levels: info.frees_empty_tables, blocks: info.blocks };
        let expected = self.model.expect_access(&g, rules, vm, ipa, kind, STUB_IPA);
        if !outcome_matches(&expected, &outcome, info.blocks) {
            self.violation(Detail::AccessMismatch { vm, ipa: Ipa(ipa), expected, got: outcome });
        }
        if let (AccessKind::Write(value), AccessOutcome::Written, AccessOutcome::Written) =
            (kind, outcome, expected)
        {
            self.model.store(vm, ipa, value);
        }
        OpResult::Access { outcome, fresh }
    }

    pub(super) fn check_memslots(&mut self, vm: u8) {
        self.slots.clear();
        self.target.memslots(vm, &mut self.slots);
        let model: Vec<_> = self.model.vm(vm).slots.iter().map(Slot::tuple).collect();
        if self.slots != model {
            let slots = self.slots.clone();
            self.violation(Detail::StateMismatch { vm, problem: StateProblem::Memslots(slots) });
        }
    }

    /// The vCPU cache must hold `model` pages (that each is an allocated page outside the
    /// tables is checked at the end of the sequence, with the leaks).
    pub(super) fn check_cache(&mut self, vm: u8, model: u32) {
        self.model.vm_mut(vm).cache = model;
        let target = self.target.cache_len(vm) as u32;
        if target != model {
            // Adopt the target's count so that one mistake gives one finding.
            self.model.vm_mut(vm).cache = target;
            self.violation(Detail::StateMismatch { vm, problem: StateProblem::Cache { target, model } });
        }
    }

    pub(super) fn judge(&self) -> Judge {
        let info = self.target.info();
        Judge {
            geometry: *self.host.geometry(),
            exact_fault_levels: info.frees_empty_tables,
            blocks: info.blocks,
            attrs: info.attrs,
        }
    }

    /// Compares the tables with the model over every range this op changed in the model,
    /// every leaf it wrote, and the first mapped page of every table entry it changed.
    pub(super) fn verify_changes(&mut self) {
        let mut todo = core::mem::take(&mut self.changed);
        for &(vm, ipa, level) in &self.host.leaf_writes {
            todo.push((vm, ipa.0, ipa.0 + crate::arch::level_size(level)));
        }
        for &(vm, ipa, level) in &self.host.table_changes {
            if let Some(v) = &self.model.vms[vm as usize] {
                if let Some(first) = v.first_mapped(ipa.0, ipa.0 + crate::arch::level_size(level)) {
                    todo.push((vm, first, first + PAGE_SIZE));
                }
            }
        }
        // A stable sort: the leaf writes come in runs of ascending addresses, which it merges
        // in linear time (an unstable sort does not see them).
        todo.sort();
        todo.dedup();
        let judge = self.judge();
        let mut last: Option<(u8, u64)> = None;
        for &(vm, start, end) in &todo {
            // Skip what an overlapping earlier range of the same VM already covered.
            let start = match last {
                Some((v, e)) if v == vm && e >= end => continue,
                Some((v, e)) if v == vm && e > start => e,
                _ => start,
            };
            last = Some((vm, end));
            self.verify_range(&judge, vm, start, end);
        }
        self.changed = todo;
        self.changed.clear();
    }

    pub(super) fn verify_range(&mut self, judge: &Judge, vm: u8, start: u64, end: u64) -> bool {
        let (Some(root), Some(model)) = (self.target.root(vm), self.model.vms[vm as usize].as_ref()) else {
            return true;
        };
        let host = &mut self.host;
        match compare::range(judge, &mut |a| host.peek(a), root, vm, model, start, end) {
            Some(d) => {
                self.violation(d);
                false
            }
            None => true,
        }
    }

    /// Full comparison of one VM: every model run translates as the model says, and the
    /// tables map nothing else. The second half compares the bytes mapped by reachable
    /// leaves, as the observed writes left them (O(pages)), with the model's; only when they
    /// differ does a full walk find the extra leaf.
    pub(super) fn verify_all(&mut self, vm: u8) {
        let (Some(root), Some(model)) = (self.target.root(vm), self.model.vms[vm as usize].as_ref()) else {
            return;
        };
        let runs: Vec<(u64, u64)> = model.map.iter().map(|(&s, r)| (s, r.end)).collect();
        let judge = self.judge();
        for (s, e) in runs {
            if !self.verify_range(&judge, vm, s, e) {
                return;
            }
        }
        let model = self.model.vm(vm);
        if self.host.reachable_bytes(vm) == model.mapped_bytes() {
            return;
        }
        let mut extra = None;
        let host = &mut self.host;
        crate::arch::walk::visit(&judge.geometry, &mut |a| host.peek(a), root, &mut |v| {
            if let crate::arch::walk::Visit::Leaf { ipa, desc, level, .. } = v {
                if model.get(ipa.0).is_none() && extra.is_none() {
                    extra = Some((ipa, desc, level));
                }
            }
        });
        if let Some((ipa, desc, level)) = extra {
            self.violation(Detail::ModelMismatch {
                vm,
                ipa,
                expected: None,
                fault_level: None,
                found: crate::violation::Found::Leaf(desc, level),
            });
        }
    }
}
