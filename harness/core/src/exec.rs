//! The executor: drives `mmu` op by op on any [`Machine`], checks every oracle after every
//! op, and records the trace. The same code runs natively and inside the ARM image.

use crate::event::Event;
use crate::host::Host;
use crate::layout::STUB_IPA;
use crate::machine::{AccessKind, AccessOutcome, FaultKind, Machine};
use crate::model::{ioremap_pages, Model, Slot, VmModel};
use crate::op::{Config, Op, MAX_VMS};
use crate::result::{OpResult, Reject, ResultSet};
use crate::trace::{Step, Trace};
use crate::violation::{Detail, Found, Mapping, Violation};
use crate::walker;
use alloc::string::String;
use alloc::vec::Vec;
use mmu::addr::{level_size, IPA_LIMIT, PAGE_SIZE};
use mmu::cache::CACHE_CAPACITY;
use mmu::memslot::MAX_MEMSLOTS;
use mmu::{Error, Hva, Ipa, Kvm, Memslot, Pa, S2Attrs, Vmid, VmidAllocator, VmidState, Vttbr};

/// The `mmu` VM `vm`, borrowing only the `vms` field so `host` stays free.
macro_rules! kvm {
    ($s:ident, $vm:expr) => {
        $s.vms[$vm as usize].as_mut().expect("checked live").kvm
    };
}

struct Vm {
    kvm: Kvm,
    /// The VTTBR the vCPU entered the guest with; `None` while it is outside.
    entered: Option<Vttbr>,
    /// VMID-oracle view: the VMID it was given and the rollover count at that time.
    owner: Option<(Vmid, u32)>,
}

/// Runs sequences.
pub struct Executor<M: Machine> {
    /// The platform layer (and through it the machine).
    pub host: Host<M>,
    config: Config,
    vmids: VmidAllocator,
    vms: [Option<Vm>; MAX_VMS],
    model: Model,
    index: u32,
    stopped: bool,
    record: bool,
    steps: Vec<Step>,
    violations: Vec<Violation>,
    /// IPAs whose model entry changed during the current op.
    changed: Vec<(u8, u64)>,
}

impl<M: Machine> Executor<M> {
    /// An executor over `machine`. With `record`, every op's events are kept for the trace.
    pub fn new(machine: M, config: Config, record: bool) -> Self {
        let vmids = VmidAllocator::new(config.vmid_bits.clamp(1, 8)).expect("clamped to 1..=8");
        Executor {
            host: Host::new(machine, &config, record),
            config,
            vmids,
            vms: Default::default(),
            model: Model::default(),
            index: 0,
            stopped: false,
            record,
            steps: Vec::new(),
            violations: Vec::new(),
            changed: Vec::new(),
        }
    }

    /// Starts a new sequence under `config`, reusing every allocation.
    pub fn reset(&mut self, config: Config) {
        self.host.reset(&config);
        self.config = config;
        self.vmids = VmidAllocator::new(config.vmid_bits.clamp(1, 8)).expect("clamped to 1..=8");
        self.vms = Default::default();
        self.model.reset();
        self.index = 0;
        self.stopped = false;
        self.steps.clear();
        self.violations.clear();
    }

    /// The configuration in force.
    pub const fn config(&self) -> &Config {
        &self.config
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
        self.vms.iter().enumerate().filter_map(|(i, v)| Some((i as u8, v.as_ref()?.kvm.root()?)))
    }

    /// Runs one op and checks every oracle. After a panic, ops are ignored.
    pub fn run(&mut self, op: &Op) -> OpResult {
        if self.stopped {
            return OpResult::Panic;
        }
        self.host.begin_op(self.index, op.vm().unwrap_or(0));
        self.changed.clear();
        let result = self.apply(op);
        self.verify_changes();
        self.host.end_op();
        self.close_step(*op, result);
        result
    }

    /// Ends the sequence: a full comparison of every live VM's tables with the model.
    pub fn finish(&mut self) {
        if self.stopped {
            return;
        }
        for vm in 0..MAX_VMS as u8 {
            if self.vms[vm as usize].is_some() {
                self.verify_all(vm);
            }
        }
        let found = core::mem::take(&mut self.host.violations);
        self.violations.extend(found.iter().cloned());
        if let Some(last) = self.steps.last_mut() {
            last.violations.extend(found);
        }
    }

    /// Records that the current op panicked with `message` (a `BUG_ON`); the sequence ends.
    pub fn record_panic(&mut self, op: &Op, message: String) {
        let index = self.index;
        self.host.violations.push(Violation { op: index, detail: Detail::Bug { message } });
        self.close_step(*op, OpResult::Panic);
        self.stopped = true;
    }

    /// The recorded trace (empty steps when not recording).
    pub fn trace(&self) -> Trace {
        Trace::new(self.config, self.steps.clone())
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
        let expected = if self.host.alloc_failed { ResultSet::err(Error::NoMemory) } else { allowed };
        if !expected.allows(got) {
            self.violation(Detail::WrongResult { expected, got: *got });
        }
    }

    fn live(&self, vm: u8) -> bool {
        self.vms.get(vm as usize).is_some_and(Option::is_some)
    }

    fn apply(&mut self, op: &Op) -> OpResult {
        if let Some(vm) = op.vm() {
            let creating = matches!(op, Op::CreateVm { .. });
            if vm as usize >= MAX_VMS || (!creating && !self.live(vm)) {
                return OpResult::Rejected(Reject::NoVm);
            }
        }
        match *op {
            Op::FailAlloc { nth } => {
                self.host.fail_allocation(nth);
                OpResult::Ok
            }
            Op::CreateVm { vm } => self.create_vm(vm),
            Op::DestroyVm { vm } => {
                self.destroy_vm(vm);
                OpResult::Ok
            }
            Op::AddMemslot { vm, slot, gpa, pages, hva } => {
                self.add_memslot(vm, Slot { id: slot, gpa, pages, hva })
            }
            Op::RemoveMemslot { vm, slot } => {
                let r = to_result(kvm!(self, vm).remove_memslot(slot).map(|_| ()));
                let slots = &mut self.model.vm_mut(vm).slots;
                let known = slots.iter().position(|s| s.id == slot);
                let allowed =
                    if known.is_some() { ResultSet::OK } else { ResultSet::err(Error::UnknownMemslot) };
                self.expect(allowed, &r);
                if let (OpResult::Ok, Some(i)) = (r, known) {
                    self.model.vm_mut(vm).slots.remove(i);
                }
                r
            }
            Op::Topup { vm, min, max } => {
                let (min, max) = (usize::from(min), usize::from(max));
                let r = to_result(kvm!(self, vm).topup(&mut self.host, min, max));
                let bad = min > max || max > CACHE_CAPACITY;
                self.expect(if bad { ResultSet::err(Error::BadCacheRequest) } else { ResultSet::OK }, &r);
                r
            }
            Op::Map { vm, ipa, pa, writable } => self.map(vm, ipa, pa, writable),
            Op::Clear { vm, ipa } => {
                if touches_stub(ipa, 1) {
                    return OpResult::Rejected(Reject::ReservedIpa);
                }
                let r = to_result(kvm!(self, vm).stage2_clear_pte(&mut self.host, Ipa(ipa)).map(|_| ()));
                self.expect(page_arg(ipa), &r);
                if r == OpResult::Ok {
                    self.model.vm_mut(vm).map.remove(&ipa);
                    self.changed.push((vm, ipa));
                }
                r
            }
            Op::Ioremap { vm, ipa, pa, size } => self.ioremap(vm, ipa, pa, size),
            Op::UnmapHva { vm, hva } => {
                let r = to_result(kvm!(self, vm).unmap_hva(&mut self.host, Hva(hva)));
                self.expect(ResultSet::OK, &r);
                let v = self.model.vm_mut(vm);
                for s in &v.slots {
                    if let Some(gpa) = s.gpa_of(hva) {
                        let page = gpa & !(PAGE_SIZE - 1);
                        v.map.remove(&page);
                        self.changed.push((vm, page));
                    }
                }
                r
            }
            Op::UnmapHvaRange { vm, start, end } => self.unmap_hva_range(vm, start, end),
            Op::SetSpteHva { vm, hva, pa } => self.set_spte_hva(vm, hva, pa),
            Op::UpdateVmid { vm } => {
                let rollovers = self.host.rollovers;
                let old = kvm!(self, vm).vmid_state();
                let r = kvm!(self, vm).update_vttbr(&mut self.vmids, &mut self.host);
                self.after_vmid_call(vm, old, rollovers);
                self.vms[vm as usize].as_mut().expect("live").entered = None;
                let r = r.map_or_else(OpResult::Err, OpResult::Vttbr);
                self.expect_vttbr(vm, &r);
                r
            }
            Op::Enter { vm } => self.enter(vm),
            Op::Read { vm, ipa } => self.access(vm, ipa, AccessKind::Read),
            Op::Write { vm, ipa, value } => self.access(vm, ipa, AccessKind::Write(value)),
        }
    }

    fn create_vm(&mut self, vm: u8) -> OpResult {
        if self.live(vm) {
            return OpResult::Rejected(Reject::VmExists);
        }
        let mut kvm = Kvm::new(self.config.defects);
        if let Err(e) = kvm.alloc_stage2_pgd(&mut self.host) {
            let r = OpResult::Err(e);
            self.expect(ResultSet::OK, &r);
            return r;
        }
        let root = kvm.root().expect("just allocated");
        self.host.register_root(vm, root);
        let stub = self.config.layout.stub_frame();
        if let Err(e) = kvm.map_guest_page(&mut self.host, STUB_IPA, stub, false) {
            // kvm_arch_init_vm's error path: undo everything.
            self.host.destroying = Some(vm);
            kvm.free_memory_caches(&mut self.host);
            kvm.free_stage2_pgd(&mut self.host);
            self.host.destroying = None;
            self.host.forget_vm(vm);
            self.host.check_leaks(vm);
            let r = OpResult::Err(e);
            self.expect(ResultSet::OK, &r);
            return r;
        }
        self.expect(ResultSet::OK, &OpResult::Ok);
        let mut model = VmModel::default();
        model.map.insert(STUB_IPA.0, Mapping { pa: stub, attrs: S2Attrs::GUEST_RO });
        self.model.vms[vm as usize] = Some(model);
        self.vms[vm as usize] = Some(Vm { kvm, entered: None, owner: None });
        self.changed.push((vm, STUB_IPA.0));
        OpResult::Ok
    }

    fn destroy_vm(&mut self, vm: u8) {
        self.verify_all(vm);
        let mut v = self.vms[vm as usize].take().expect("checked live");
        self.host.destroying = Some(vm);
        v.kvm.free_memory_caches(&mut self.host);
        v.kvm.free_stage2_pgd(&mut self.host);
        self.host.destroying = None;
        self.host.forget_vm(vm);
        self.host.check_leaks(vm);
        self.model.vms[vm as usize] = None;
    }

    fn add_memslot(&mut self, vm: u8, s: Slot) -> OpResult {
        let bytes = s.pages.checked_mul(PAGE_SIZE);
        if bytes.is_some_and(|b| touches_stub(s.gpa, b.div_ceil(PAGE_SIZE).max(1))) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
        let slot = Memslot::new(s.id, Ipa(s.gpa), s.pages, Hva(s.hva));
        let r = to_result(slot.and_then(|slot| kvm!(self, vm).add_memslot(slot)));
        // The specification: every rule the slot breaks is an acceptable error.
        let v = self.model.vm(vm);
        let mut allowed = ResultSet(0);
        if !s.gpa.is_multiple_of(PAGE_SIZE) || !s.hva.is_multiple_of(PAGE_SIZE) {
            allowed = allowed.or_err(Error::Misaligned);
        }
        let gpa_end = bytes.and_then(|b| s.gpa.checked_add(b));
        if s.pages == 0
            || gpa_end.is_none_or(|e| e > IPA_LIMIT)
            || bytes.and_then(|b| s.hva.checked_add(b)).is_none()
        {
            allowed = allowed.or_err(Error::OutOfRange);
        }
        let end = gpa_end.unwrap_or(u64::MAX);
        if v.slots.iter().any(|o| o.id == s.id || (s.gpa < o.gpa + o.pages * PAGE_SIZE && o.gpa < end)) {
            allowed = allowed.or_err(Error::MemslotOverlap);
        }
        if v.slots.len() == MAX_MEMSLOTS {
            allowed = allowed.or_err(Error::NoMemslotSpace);
        }
        self.expect(if allowed.0 == 0 { ResultSet::OK } else { allowed }, &r);
        if r == OpResult::Ok {
            let slots = &mut self.model.vm_mut(vm).slots;
            let at = slots.iter().take_while(|o| o.id < s.id).count();
            slots.insert(at, s);
        }
        r
    }

    fn map(&mut self, vm: u8, ipa: u64, pa: u64, writable: bool) -> OpResult {
        if touches_stub(ipa, 1) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
        if !self.config.layout.in_guest_window(Pa(pa), 1) {
            return OpResult::Rejected(Reject::PaOutsideWindow);
        }
        let r = to_result(kvm!(self, vm).map_guest_page(&mut self.host, Ipa(ipa), Pa(pa), writable));
        let mut allowed = page_arg(ipa);
        if !pa.is_multiple_of(PAGE_SIZE) {
            allowed = if allowed == ResultSet::OK { ResultSet(0) } else { allowed };
            allowed = allowed.or_err(Error::Misaligned);
        }
        self.expect(allowed, &r);
        if r == OpResult::Ok {
            let attrs = if writable { S2Attrs::GUEST_RW } else { S2Attrs::GUEST_RO };
            self.model.vm_mut(vm).map.insert(ipa, Mapping { pa: Pa(pa), attrs });
            self.changed.push((vm, ipa));
        }
        r
    }

    fn ioremap(&mut self, vm: u8, ipa: u64, pa: u64, size: u64) -> OpResult {
        let Some((first, pages)) = ioremap_pages(ipa, size) else {
            let r = to_result(kvm!(self, vm).phys_addr_ioremap(&mut self.host, Ipa(ipa), Pa(pa), size));
            self.expect(ResultSet::err(Error::OutOfRange), &r);
            return r;
        };
        if touches_stub(first, pages) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
        if !self.config.layout.in_device_window(Pa(pa), pages.max(1)) {
            return OpResult::Rejected(Reject::PaOutsideWindow);
        }
        let r = to_result(kvm!(self, vm).phys_addr_ioremap(&mut self.host, Ipa(ipa), Pa(pa), size));
        // Pages are mapped in order until one is already mapped (EFAULT).
        let v = self.model.vm(vm);
        let frame = pa & !(PAGE_SIZE - 1);
        let plan: Vec<(u64, Mapping)> = (0..pages)
            .map(|k| {
                (first + k * PAGE_SIZE, Mapping { pa: Pa(frame + k * PAGE_SIZE), attrs: S2Attrs::DEVICE_RW })
            })
            .collect();
        let clash = plan.iter().position(|(p, _)| v.map.contains_key(p));
        self.expect(if clash.is_some() { ResultSet::err(Error::Fault) } else { ResultSet::OK }, &r);
        let mapped = match r {
            OpResult::Ok => plan.len(),
            OpResult::Err(Error::Fault) => clash.unwrap_or(0),
            // After ENOMEM, adopt the prefix the tables hold; verification checks the rest.
            _ => {
                let root = self.vms[vm as usize].as_ref().and_then(|v| v.kvm.root()).expect("live");
                let host = &mut self.host;
                plan.iter()
                    .take(clash.unwrap_or(plan.len()))
                    .take_while(|(p, m)| {
                        walker::translate(&mut |a| host.peek(a), root, Ipa(*p)).is_ok_and(|l| l.pa == m.pa)
                    })
                    .count()
            }
        };
        let model = self.model.vm_mut(vm);
        for (p, m) in &plan[..mapped] {
            model.map.insert(*p, *m);
        }
        self.changed.extend(plan.iter().map(|(p, _)| (vm, *p)));
        r
    }

    fn unmap_hva_range(&mut self, vm: u8, start: u64, end: u64) -> OpResult {
        let r = to_result(kvm!(self, vm).unmap_hva_range(&mut self.host, Hva(start), Hva(end)));
        let aligned = start.is_multiple_of(PAGE_SIZE) && end.is_multiple_of(PAGE_SIZE);
        self.expect(if aligned { ResultSet::OK } else { ResultSet::err(Error::Misaligned) }, &r);
        if r != OpResult::Ok {
            return r;
        }
        let v = self.model.vm_mut(vm);
        for s in &v.slots {
            let lo = start.max(s.hva);
            let hi = end.min(s.hva.saturating_add(s.pages * PAGE_SIZE));
            if lo < hi {
                let (glo, ghi) = (s.gpa + (lo - s.hva), s.gpa + (hi - s.hva));
                let gone: Vec<u64> = v.map.range(glo..ghi).map(|(k, _)| *k).collect();
                for page in gone {
                    v.map.remove(&page);
                    self.changed.push((vm, page));
                }
            }
        }
        r
    }

    fn set_spte_hva(&mut self, vm: u8, hva: u64, pa: u64) -> OpResult {
        if !self.config.layout.in_guest_window(Pa(pa), 1) {
            return OpResult::Rejected(Reject::PaOutsideWindow);
        }
        let r = to_result(kvm!(self, vm).set_spte_hva(&mut self.host, Hva(hva), Pa(pa)));
        self.expect(
            if pa.is_multiple_of(PAGE_SIZE) { ResultSet::OK } else { ResultSet::err(Error::Misaligned) },
            &r,
        );
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
                v.map.insert(gpa, Mapping { pa: Pa(pa), attrs: S2Attrs::GUEST_RO });
            }
            self.changed.push((vm, gpa));
        }
        r
    }

    /// Bookkeeping after `update_vttbr` or the entry re-check: a rollover forces every vCPU
    /// out of its guest (`force_vm_exit`); a new VMID goes to the VMID oracle.
    fn after_vmid_call(&mut self, vm: u8, old: VmidState, rollovers: u32) {
        if self.host.rollovers != rollovers {
            for v in self.vms.iter_mut().flatten() {
                v.entered = None;
            }
        }
        // A (re)assignment, even of the same number in a new generation.
        if kvm!(self, vm).vmid_state() == old {
            return;
        }
        let vttbr = kvm!(self, vm).vttbr();
        self.host.event(Event::Vttbr { vm, vttbr });
        self.host.set_vmid(vm, vttbr.vmid());
        let (vmid, now) = (vttbr.vmid(), self.host.rollovers);
        let other = self.holder(vm, vmid);
        if let Some(other) = other {
            self.violation(Detail::VmidReuse { vm, other, vmid });
        }
        self.vms[vm as usize].as_mut().expect("live").owner = Some((vmid, now));
    }

    /// Another live VM holding `vmid` in the current generation.
    fn holder(&self, vm: u8, vmid: Vmid) -> Option<u8> {
        let now = self.host.rollovers;
        (0..MAX_VMS as u8)
            .find(|&o| o != vm && self.vms[o as usize].as_ref().is_some_and(|v| v.owner == Some((vmid, now))))
    }

    fn expect_vttbr(&mut self, vm: u8, r: &OpResult) {
        let root = self.vms[vm as usize].as_ref().and_then(|v| v.kvm.root());
        if !matches!(r, OpResult::Vttbr(v) if Some(v.root()) == root) {
            self.violation(Detail::WrongResult { expected: ResultSet::OK, got: *r });
        }
    }

    /// The world switch (`kvm_arch_vcpu_ioctl_run`): a vCPU that never ran gets its first
    /// VMID, then the last check, then the oracles that guard guest entry.
    fn enter(&mut self, vm: u8) -> OpResult {
        let rollovers = self.host.rollovers;
        let old = kvm!(self, vm).vmid_state();
        if old.generation == 0 {
            let _ = kvm!(self, vm).update_vttbr(&mut self.vmids, &mut self.host);
        }
        let r = kvm!(self, vm).vcpu_enter(&mut self.vmids, &mut self.host);
        self.after_vmid_call(vm, old, rollovers);
        let r = r.map_or_else(OpResult::Err, OpResult::Vttbr);
        self.expect_vttbr(vm, &r);
        let vttbr = kvm!(self, vm).vttbr();
        let (vmid, now) = (vttbr.vmid(), self.host.rollovers);
        let owner = self.vms[vm as usize].as_ref().and_then(|v| v.owner);
        match owner {
            Some((v, at)) if v == vmid && at == now && vmid != Vmid(0) => {}
            _ => {
                let assigned_in = owner.map_or(0, |(_, at)| at + 1);
                let rollovers = now - owner.map_or(now, |(_, at)| at);
                self.violation(Detail::VmidStale { vm, vmid, assigned_in, rollovers });
            }
        }
        if let Some(other) = self.holder(vm, vmid) {
            self.violation(Detail::VmidShared { vm, other, vmid });
        }
        self.host.check_guest_runs(vm);
        self.vms[vm as usize].as_mut().expect("live").entered = Some(vttbr);
        r
    }

    fn access(&mut self, vm: u8, ipa: u64, kind: AccessKind) -> OpResult {
        if !ipa.is_multiple_of(4) || ipa >= IPA_LIMIT {
            return OpResult::Rejected(Reject::BadAccessAddress);
        }
        if touches_stub(ipa & !(PAGE_SIZE - 1), 1) {
            return OpResult::Rejected(Reject::ReservedIpa);
        }
        let vttbr = match self.vms[vm as usize].as_ref().and_then(|v| v.entered) {
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
        let expected = self.model.expect_access(vm, ipa, kind, STUB_IPA);
        if outcome != expected {
            self.violation(Detail::AccessMismatch { vm, ipa: Ipa(ipa), expected, got: outcome });
        }
        if let (AccessKind::Write(value), AccessOutcome::Written, AccessOutcome::Written) =
            (kind, outcome, expected)
        {
            self.model.store(vm, ipa, value);
        }
        OpResult::Access { outcome, fresh }
    }

    /// Compares the tables with the model for every IPA this op wrote or the model changed,
    /// and for the regions of table entries that changed.
    fn verify_changes(&mut self) {
        let mut todo = core::mem::take(&mut self.changed);
        todo.extend(self.host.leaf_writes.iter().map(|&(vm, ipa)| (vm, ipa.0)));
        for &(vm, ipa, level) in &self.host.table_changes {
            if let Some(v) = &self.model.vms[vm as usize] {
                let start = ipa.0;
                if let Some((&first, _)) = v.map.range(start..start + level_size(level)).next() {
                    todo.push((vm, first));
                }
            }
        }
        todo.sort_unstable();
        todo.dedup();
        for &(vm, ipa) in &todo {
            self.verify_ipa(vm, ipa);
        }
        self.changed = todo;
        self.changed.clear();
    }

    fn root_of(&self, vm: u8) -> Option<Pa> {
        self.vms.get(vm as usize)?.as_ref()?.kvm.root()
    }

    fn verify_ipa(&mut self, vm: u8, ipa: u64) {
        let (Some(root), Some(model)) = (self.root_of(vm), self.model.vms[vm as usize].as_ref()) else {
            return;
        };
        let host = &mut self.host;
        let found = walker::translate(&mut |a| host.peek(a), root, Ipa(ipa));
        let expected = model.map.get(&ipa).copied();
        let ok = match (&expected, &found) {
            (Some(m), Ok(leaf)) => leaf.level == 3 && leaf.pa == m.pa && leaf.desc.attrs() == Some(m.attrs),
            (None, Err(f)) => f.kind == FaultKind::Translation && f.level == model.fault_level(ipa),
            _ => false,
        };
        if !ok {
            let found = match found {
                Ok(leaf) => Found::Leaf(leaf.desc),
                Err(f) => Found::Fault(f),
            };
            self.violation(Detail::ModelMismatch { vm, ipa: Ipa(ipa), expected, found });
        }
    }

    /// Full comparison of one VM: every model entry translates as the model says, and the
    /// tables hold no other leaf. The second half counts valid level-3 entries reachable from
    /// the root, as the host's bookkeeping of observed writes has them: O(model + pages)
    /// instead of a scan of every entry. Only when the counts differ does a full walk find
    /// the extra leaf.
    fn verify_all(&mut self, vm: u8) {
        let (Some(root), Some(model)) = (self.root_of(vm), self.model.vms[vm as usize].as_ref()) else {
            return;
        };
        let mapped: Vec<u64> = model.map.keys().copied().collect();
        let before = self.host.violations.len();
        for ipa in mapped {
            self.verify_ipa(vm, ipa);
            if self.host.violations.len() > before {
                return;
            }
        }
        let model = self.model.vm(vm);
        if self.host.reachable_leaves(vm) == model.map.len() {
            return;
        }
        let mut extra = None;
        let host = &mut self.host;
        walker::visit(&mut |a| host.peek(a), root, &mut |v| {
            if let walker::Visit::Leaf { ipa, desc, .. } = v {
                if !model.map.contains_key(&ipa.0) && extra.is_none() {
                    extra = Some((ipa, desc));
                }
            }
        });
        if let Some((ipa, desc)) = extra {
            self.violation(Detail::ModelMismatch { vm, ipa, expected: None, found: Found::Leaf(desc) });
        }
    }
}

fn to_result(r: Result<(), Error>) -> OpResult {
    match r {
        Ok(()) => OpResult::Ok,
        Err(e) => OpResult::Err(e),
    }
}

/// The allowed results for an op on the page at `ipa`: caller mistakes are errors.
fn page_arg(ipa: u64) -> ResultSet {
    if !ipa.is_multiple_of(PAGE_SIZE) {
        ResultSet::err(Error::Misaligned)
    } else if ipa >= IPA_LIMIT {
        ResultSet::err(Error::OutOfRange)
    } else {
        ResultSet::OK
    }
}

/// True when `pages` pages from the page of `ipa` include the guest stub's page.
fn touches_stub(ipa: u64, pages: u64) -> bool {
    let start = ipa & !(PAGE_SIZE - 1);
    start <= STUB_IPA.0 && STUB_IPA.0 - start < pages.saturating_mul(PAGE_SIZE)
}
