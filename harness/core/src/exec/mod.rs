//! The executor: runs a target op by op on any [`Machine`], checks every oracle after every
//! op, and records the trace. The same code runs natively and inside the ARM images. Here
//! live the op loop and, for each op, the results the reference model allows and how the
//! model changes; the oracles themselves are in [`crate::oracle`].

use crate::arch::{Pa, Vttbr, PAGE_SIZE};
use crate::feedback::{bucket, Family};
use crate::host::Host;
use crate::machine::{AccessKind, AccessOutcome, Machine};
use crate::op::{Config, Op, MAX_VMS};
use crate::oracle::model::{Model, Slot};
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
        let ipa = { *op }.ipa_mut().copied();
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
                self.hva_feature(vm, hva, 1);
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
}

mod guest;
mod ops;

use ops::{page_arg, touches_stub};
