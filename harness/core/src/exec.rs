//! The executor: runs a target op by op on any [`Machine`], checks every oracle after every
//! op, and records the trace. The same code runs natively and inside the ARM images. Here
//! live the op loop and, for each op, the results the reference model allows and how the
//! model changes; the oracles themselves are in [`crate::oracle`].

use crate::arch::{Ipa, Pa, Prot, Vttbr, PAGE_SIZE};
use crate::event::Event;
use crate::feedback::{bucket, Family};
use crate::host::Host;
use crate::layout::STUB_IPA;
use crate::machine::{AccessKind, AccessOutcome, Machine};
use crate::op::{Config, Op, MAX_VMS};
use crate::oracle::compare::{self, Judge};
use crate::oracle::model::{ioremap_pages, outcome_matches, Model, Slot, VmModel};
use crate::oracle::vmid::check_vttbr;
use crate::result::{Errno, OpResult, Reject, ResultSet};
use crate::target::Target;
use crate::trace::{Step, Trace};
use crate::violation::{Detail, StateProblem, Violation};
use alloc::string::String;
use alloc::vec::Vec;

/// Pages a vCPU memory cache holds at most (`KVM_NR_MEM_OBJS` of the KVM/ARM API).
pub const CACHE_CAPACITY: u32 = 40;
/// The fault path tops the cache up to capacity when it holds fewer than this.
pub const FAULT_TOPUP_MIN: u32 = 2;
/// Memslots a VM can have (`KVM_MEMORY_SLOTS` of the seed).
pub const MAX_MEMSLOTS: usize = 32;

/// Runs sequences of one target.
pub struct Executor<M: Machine, T: Target> {
    /// The code under test. Declared first, so it is dropped while the machine's memory,
    /// where a memory-owning target keeps its tables, still exists.
    pub target: T,
    /// The platform layer (and through it the machine).
    pub host: Host<M>,
    config: Config,
    model: Model,
    live: [bool; MAX_VMS],
    /// The VTTBR each vCPU entered its guest with; `None` while it is outside.
    entered: [Option<Vttbr>; MAX_VMS],
    /// What each VM's VMID state was after the last VMID op: (VTTBR, generation).
    vmid_state: [(Vttbr, u64); MAX_VMS],
    /// The VMID oracle's generation when vCPUs last entered.
    generation: u32,
    index: u32,
    stopped: bool,
    record: bool,
    steps: Vec<Step>,
    violations: Vec<Violation>,
    /// IPA ranges whose model entries changed during the current op.
    changed: Vec<(u8, u64, u64)>,
    slots: Vec<(u16, u64, u64, u64)>,
    pages: Vec<Pa>,
}

impl<M: Machine, T: Target> Executor<M, T> {
    /// An executor of `target` over `machine`. With `record`, every op's events are kept.
    pub fn new(machine: M, mut target: T, config: Config, record: bool) -> Self {
        target.reset(&config);
        Executor {
            host: Host::new(machine, &config, target.info(), record),
            target,
            config,
            model: Model::default(),
            live: [false; MAX_VMS],
            entered: [None; MAX_VMS],
            vmid_state: [(Vttbr(0), 0); MAX_VMS],
            generation: 0,
            index: 0,
            stopped: false,
            record,
            steps: Vec::new(),
            violations: Vec::new(),
            changed: Vec::new(),
            slots: Vec::new(),
            pages: Vec::new(),
        }
    }

    /// Starts a new sequence under `config`, reusing every allocation.
    pub fn reset(&mut self, config: Config) {
        self.target.reset(&config);
        self.host.reset(&config, self.target.info());
        self.config = config;
        self.model.reset();
        self.live = [false; MAX_VMS];
        self.entered = [None; MAX_VMS];
        self.vmid_state = [(Vttbr(0), 0); MAX_VMS];
        self.generation = 0;
        self.index = 0;
        self.stopped = false;
        self.steps.clear();
        self.violations.clear();
    }

    /// The configuration in force.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// True when steps are recorded.
    pub const fn recording(&self) -> bool {
        self.record
    }

    /// Every violation so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// True once a panic ended the sequence.
    pub const fn stopped(&self) -> bool {
        self.stopped
    }

    /// Number of ops run.
    pub const fn ops_run(&self) -> u32 {
        self.index
    }

    /// Roots of the live VMs.
    pub fn roots(&self) -> impl Iterator<Item = (u8, Pa)> + '_ {
        (0..MAX_VMS as u8).filter_map(|vm| Some((vm, self.target.root(vm)?)))
    }

    /// Runs one op and checks every oracle. After a panic, ops are ignored.
    pub fn run(&mut self, op: &Op) -> OpResult {
        if self.stopped {
            return OpResult::Panic;
        }
        self.host.begin_op(self.index, op.vm().unwrap_or(0));
        self.changed.clear();
        let result = self.apply(op);
        self.host.sync();
        if self.host.feedback.families != 0 {
            self.feed(op, &result);
        }
        self.verify_changes();
        self.host.end_op();
        self.close_step(*op, result);
        result
    }

    /// The fuzzers' state feedback of an op: its kind and result, and the pair with the
    /// previous op on the same page (the oracles' own families are fed by the platform layer).
    fn feed(&mut self, op: &Op, result: &OpResult) {
        let code = match *result {
            OpResult::Ok => 0,
            OpResult::Vttbr(_) => 1,
            OpResult::Panic => 2,
            OpResult::Err(e) => 3 + e as usize,
            OpResult::Rejected(r) => 20 + r as usize,
            OpResult::Access { outcome, .. } => match outcome {
                AccessOutcome::Read(_) => 32,
                AccessOutcome::Written => 33,
                AccessOutcome::Abort(a) => 34 + a.fault.kind as usize * 4 + usize::from(a.fault.level & 3),
                _ => 47,
            },
        };
        let kind = op.kind();
        self.host.feedback.hit(Family::Outcome, usize::from(kind) * 64 + code);
        // What the op took out of the model: mapped pages, and the 1 GiB regions they were in.
        let (pages, regions) = self.host.feedback.take_removed();
        if pages > 0 {
            let k = usize::from(kind) * 64;
            self.host.feedback.hit(Family::Outcome, k + 48 + bucket(pages, 7));
            self.host.feedback.hit(Family::Outcome, k + 56 + bucket(regions, 7));
        }
        let ipa = match *op {
            Op::Map { ipa, .. }
            | Op::Clear { ipa, .. }
            | Op::Ioremap { ipa, .. }
            | Op::Read { ipa, .. }
            | Op::Write { ipa, .. }
            | Op::MapRange { ipa, .. }
            | Op::UnmapRange { ipa, .. }
            | Op::ProtectRange { ipa, .. } => Some(ipa),
            Op::AddMemslot { gpa, .. } => Some(gpa),
            _ => None,
        };
        if let (Some(ipa), Some(vm)) = (ipa, op.vm()) {
            self.host.feedback.pair(vm, ipa, kind);
        }
    }

    /// Ends the sequence: a full comparison of every live VM with the model, then the leak
    /// check of the live VMs (pages allocated, in no table, in no vCPU cache), which also
    /// checks that every cache page is an allocated page outside the tables.
    pub fn finish(&mut self) {
        if self.stopped {
            return;
        }
        self.host.sync_all();
        self.pages.clear();
        for vm in 0..MAX_VMS as u8 {
            if self.live[vm as usize] {
                self.verify_all(vm);
                self.target.cache(vm, &mut self.pages);
            }
        }
        if let Some(pa) = self.host.check_leaks(&self.live, &self.pages, None) {
            let vm = self.host.pool_owner(pa).unwrap_or(0);
            self.violation(Detail::StateMismatch { vm, problem: StateProblem::CachePage(pa) });
        }
        let found = core::mem::take(&mut self.host.violations);
        self.violations.extend(found.iter().cloned());
        if let Some(last) = self.steps.last_mut() {
            last.violations.extend(found);
        }
    }

    /// Records that the current op panicked with `message` (a `BUG_ON`); the sequence ends.
    pub fn record_panic(&mut self, op: &Op, message: String) {
        // What a memory-owning target wrote before it died is part of the step.
        self.host.sync();
        let index = self.index;
        let detail = if self.host.alloc_failed {
            Detail::BugAfterAllocFailure { message }
        } else {
            Detail::Bug { message }
        };
        self.host.violations.push(Violation { op: index, detail });
        self.close_step(*op, OpResult::Panic);
        self.stopped = true;
    }

    /// The recorded trace (empty steps when not recording).
    pub fn trace(&self) -> Trace {
        Trace::new(self.config, self.target.info().name, self.steps.clone())
    }

    /// The recorded steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    fn close_step(&mut self, op: Op, result: OpResult) {
        let violations = core::mem::take(&mut self.host.violations);
        self.violations.extend(violations.iter().cloned());
        if self.record {
            let events = core::mem::take(&mut self.host.events);
            self.steps.push(Step { op, result, events, violations });
        }
        self.index += 1;
    }

    fn violation(&mut self, detail: Detail) {
        self.host.violations.push(Violation { op: self.index, detail });
    }

    fn expect(&mut self, allowed: ResultSet, got: &OpResult) {
        // An allocation failure must surface as ENOMEM; without one, ENOMEM is wrong.
        let expected = if self.host.alloc_failed { ResultSet::err(Errno::NoMemory) } else { allowed };
        if !expected.allows(got) {
            self.violation(Detail::WrongResult { expected, got: *got });
        }
    }

    fn call(&mut self, op: &Op) -> OpResult {
        self.host.target_called = true;
        self.host.called_this_op = true;
        match self.target.call(&mut self.host, op) {
            Ok(()) => OpResult::Ok,
            Err(e) => OpResult::Err(e),
        }
    }

    /// True when the target offers `op`'s kind.
    fn offers(&self, op: Op) -> bool {
        self.target.info().offers(&op)
    }

    fn apply(&mut self, op: &Op) -> OpResult {
        if !self.target.info().offers(op) {
            return OpResult::Rejected(Reject::NotOffered);
        }
        if let Some(vm) = op.vm() {
            let creating = matches!(op, Op::CreateVm { .. });
            if vm as usize >= MAX_VMS || (!creating && !self.live[vm as usize]) {
                return OpResult::Rejected(Reject::NoVm);
            }
        }
        let limit = self.host.geometry().ipa_limit();
        match *op {
            Op::FailAlloc { nth } => {
                self.host.fail_allocation(nth);
                OpResult::Ok
            }
            Op::CreateVm { vm } => self.create_vm(vm),
            Op::DestroyVm { vm } => self.destroy_vm(vm),
            Op::AddMemslot { vm, slot, gpa, pages, hva } => {
                self.add_memslot(vm, Slot { id: slot, gpa, pages, hva })
            }
            Op::RemoveMemslot { vm, slot } => self.remove_memslot(vm, slot),
            Op::Topup { vm, min, max } => {
                let before = self.model.vm(vm).cache;
                let r = self.call(op);
                let bad = min > max || u32::from(max) > CACHE_CAPACITY;
                self.expect(if bad { ResultSet::err(Errno::BadCacheRequest) } else { ResultSet::OK }, &r);
                let after = match r {
                    OpResult::Ok if before < u32::from(min) => u32::from(max),
                    OpResult::Err(Errno::NoMemory) => before + self.host.allocs_this_op,
                    _ => before,
                };
                self.check_cache(vm, after);
                r
            }
            Op::Map { vm, ipa, pa, writable } => self.map(op, vm, ipa, pa, writable),
            Op::Clear { vm, ipa } => {
                if touches_stub(ipa, 1) {
                    return OpResult::Rejected(Reject::ReservedIpa);
                }
                let r = self.call(op);
                self.expect(page_arg(ipa, limit), &r);
                if r == OpResult::Ok {
                    self.unmap_model(vm, ipa, ipa + PAGE_SIZE);
                }
                r
            }
            Op::Ioremap { vm, ipa, pa, size } => self.ioremap(op, vm, ipa, pa, size),
            Op::UnmapHva { vm, hva } => {
                let r = self.call(op);
                self.expect(ResultSet::OK, &r);
                let gpas: Vec<u64> = self.model.vm(vm).slots.iter().filter_map(|s| s.gpa_of(hva)).collect();
                for gpa in gpas {
                    let page = gpa & !(PAGE_SIZE - 1);
                    self.unmap_model(vm, page, page + PAGE_SIZE);
                }
                r
            }
            Op::UnmapHvaRange { vm, start, end } => self.unmap_hva_range(op, vm, start, end),
            Op::SetSpteHva { vm, hva, pa } => self.set_spte_hva(op, vm, hva, pa),
            Op::UpdateVmid { vm } => {
                let r = self.call(op);
                self.after_vmid_op(vm);
                self.entered[vm as usize] = None;
                let r = if r == OpResult::Ok { OpResult::Vttbr(self.target.vttbr(vm)) } else { r };
                self.expect_vttbr(vm, &r);
                r
            }
            Op::Enter { vm } => self.enter(vm),
            Op::Read { vm, ipa } => self.access(vm, ipa, AccessKind::Read),
            Op::Write { vm, ipa, value } => self.access(vm, ipa, AccessKind::Write(value)),
            Op::MapRange { vm, ipa, pa, size, prot } => self.map_range(op, vm, ipa, pa, size, prot),
            Op::UnmapRange { vm, ipa, size } => self.range_op(op, vm, ipa, size, None),
            Op::ProtectRange { vm, ipa, size, prot } => self.range_op(op, vm, ipa, size, Some(prot)),
        }
    }

    fn create_vm(&mut self, vm: u8) -> OpResult {
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

    fn destroy_vm(&mut self, vm: u8) -> OpResult {
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

    fn add_memslot(&mut self, vm: u8, s: Slot) -> OpResult {
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
            self.host.feedback.hit(Family::Memslots, i);
            self.host.feedback.hit(Family::Memslots, 48 + bucket(slots.len() as u64, 6));
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
    fn remove_memslot(&mut self, vm: u8, slot: u16) -> OpResult {
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
        }
        self.check_memslots(vm);
        r
    }

    /// The fault path (`user_mem_abort`): topup, then one page.
    fn map(&mut self, op: &Op, vm: u8, ipa: u64, pa: u64, writable: bool) -> OpResult {
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

    fn ioremap(&mut self, op: &Op, vm: u8, ipa: u64, pa: u64, size: u64) -> OpResult {
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
            return self.outside_windows(op, vm, first, pa, pages.max(1), true);
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

    fn unmap_hva_range(&mut self, op: &Op, vm: u8, start: u64, end: u64) -> OpResult {
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
            self.unmap_model(vm, lo, hi);
        }
        r
    }

    fn set_spte_hva(&mut self, op: &Op, vm: u8, hva: u64, pa: u64) -> OpResult {
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
    fn map_range(&mut self, op: &Op, vm: u8, ipa: u64, pa: u64, size: u64, prot: Prot) -> OpResult {
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
            return self.outside_windows(op, vm, ipa, pa, pages.max(1), size.is_multiple_of(PAGE_SIZE));
        }
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
    fn range_op(&mut self, op: &Op, vm: u8, ipa: u64, size: u64, prot: Option<Prot>) -> OpResult {
        let limit = self.host.geometry().ipa_limit();
        if touches_stub(ipa, size.div_ceil(PAGE_SIZE)) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
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
    fn outside_windows(
        &mut self,
        op: &Op,
        vm: u8,
        ipa: u64,
        pa: u64,
        pages: u64,
        size_aligned: bool,
    ) -> OpResult {
        let end = pages.checked_mul(PAGE_SIZE).and_then(|b| pa.checked_add(b));
        let beyond = end.is_none_or(|e| e > self.host.geometry().pa_limit());
        if !beyond || !self.host.machine.simulated() {
            return OpResult::Rejected(Reject::PaOutsideWindow);
        }
        let r = self.call(op);
        let mut allowed = ResultSet::err(Errno::OutOfRange);
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

    fn unmap_model(&mut self, vm: u8, start: u64, end: u64) {
        let (fb, model) = (&mut self.host.feedback, &mut self.model);
        if fb.on(Family::Outcome) {
            model.vm_mut(vm).unset_counting(start, end, &mut |s, e| fb.removed(s, e));
        } else {
            model.vm_mut(vm).unset(start, end);
        }
        self.changed.push((vm, start, end));
    }

    /// After a VMID op (or creation, for a fixed VMID): a rollover forces every vCPU out of
    /// its guest (`force_vm_exit`); a (re)assignment, even of the same number in a new
    /// generation, goes to the VMID oracle.
    fn after_vmid_op(&mut self, vm: u8) {
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

    fn check_vttbr(&mut self, vm: u8, vttbr: Vttbr) {
        let Some(root) = self.target.root(vm) else { return };
        if let Some(d) = check_vttbr(self.host.geometry(), vm, vttbr, root, self.config.vmid_bits) {
            self.violation(d);
        }
    }

    fn expect_vttbr(&mut self, vm: u8, r: &OpResult) {
        let root = self.target.root(vm);
        let g = *self.host.geometry();
        if !matches!(r, OpResult::Vttbr(v) if Some(g.vttbr_root(*v)) == root) {
            self.violation(Detail::WrongResult { expected: ResultSet::OK, got: *r });
        }
    }

    /// The world switch (`kvm_arch_vcpu_ioctl_run`), then the oracles that guard guest entry.
    fn enter(&mut self, vm: u8) -> OpResult {
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

    fn access(&mut self, vm: u8, ipa: u64, kind: AccessKind) -> OpResult {
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

    fn check_memslots(&mut self, vm: u8) {
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
    fn check_cache(&mut self, vm: u8, model: u32) {
        self.model.vm_mut(vm).cache = model;
        let target = self.target.cache_len(vm) as u32;
        if target != model {
            // Adopt the target's count so that one mistake gives one finding.
            self.model.vm_mut(vm).cache = target;
            self.violation(Detail::StateMismatch { vm, problem: StateProblem::Cache { target, model } });
        }
    }

    fn judge(&self) -> Judge {
        let info = self.target.info();
        Judge {
            geometry: *self.host.geometry(),
            exact_fault_levels: info.frees_empty_tables,
            blocks: info.blocks,
        }
    }

    /// Compares the tables with the model over every range this op changed in the model,
    /// every leaf it wrote, and the first mapped page of every table entry it changed.
    fn verify_changes(&mut self) {
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
        todo.sort_unstable();
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

    fn verify_range(&mut self, judge: &Judge, vm: u8, start: u64, end: u64) -> bool {
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
    fn verify_all(&mut self, vm: u8) {
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

/// The allowed results for an op on the page at `ipa`: caller mistakes are errors.
fn page_arg(ipa: u64, limit: u64) -> ResultSet {
    if !ipa.is_multiple_of(PAGE_SIZE) {
        ResultSet::err(Errno::Misaligned)
    } else if ipa >= limit {
        ResultSet::err(Errno::OutOfRange)
    } else {
        ResultSet::OK
    }
}

/// The allowed results for a range op on `[ipa, ipa + size)` (and frames from `pa`).
fn range_arg(ipa: u64, size: u64, limit: u64, pa: u64) -> ResultSet {
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
fn touches_stub(ipa: u64, pages: u64) -> bool {
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
