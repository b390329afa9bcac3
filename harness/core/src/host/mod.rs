//! The shared platform layer: [`Services`](crate::target::Services) over a [`Machine`]. It owns the page pool, the
//! event log and the incremental state of the structure, TLB-protocol, break-before-make,
//! VMID and cache-protocol oracles, so the simulator and the ARM images check and record
//! exactly the same things. Instrumented targets report every write here; for
//! memory-owning targets the layer diffs their table pages at every maintenance operation
//! and at the end of each op ([`Host::sync`]).

use crate::arch::{level_size, Geometry, Ipa, Pa, Vmid, PAGE_SIZE};
use crate::event::Event;
use crate::feedback::{bucket, Family, Feedback};
use crate::layout::{Layout, POISON, POOL_PAGES};
use crate::machine::Machine;
use crate::op::{Config, Walker, MAX_VMS};
use crate::oracle::bbm::{Bbm, Observation};
use crate::oracle::cache;
use crate::oracle::structure::{self, Rules};
use crate::oracle::tlb::TlbProtocol;
use crate::oracle::vmid::VmidOracle;
use crate::pool::{Page, Pool};
use crate::target::{Observe, TargetInfo};
use crate::violation::{Detail, FreeProblem, Use, Violation};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// The changed words of a page: (word, old, new).
type Diffs = Vec<(usize, u64, u64)>;

/// The platform layer for the executor.
pub struct Host<M: Machine> {
    /// The machine below.
    pub machine: M,
    layout: Layout,
    geometry: Geometry,
    rules: Rules,
    observe: Observe,
    prepares_tables: bool,
    non_coherent: bool,
    record: bool,
    /// The page pool and its per-page records.
    pub pool: Pool,
    op: u32,
    op_vm: u8,
    /// An allocation failed during the current op.
    pub alloc_failed: bool,
    /// Single pages allocated during the current op.
    pub allocs_this_op: u32,
    /// Tables linked during the current op.
    pub links_this_op: u32,
    /// The VM being destroyed, whose linked tables and root may be freed.
    pub destroying: Option<u8>,
    /// Events of the current op (when recording).
    pub events: Vec<Event>,
    /// Violations found during the current op.
    pub violations: Vec<Violation>,
    tlb: TlbProtocol,
    bbm: Bbm,
    /// The VMID oracle (fed by the executor, rolled over here).
    pub vmids: VmidOracle,
    vm_vmid: [Vmid; MAX_VMS],
    roots: [Option<Pa>; MAX_VMS],
    touched: Vec<u32>,
    dirty_pages: Vec<u32>,
    /// Leaf entries written during the current op: (vm, first IPA, level).
    pub leaf_writes: Vec<(u8, Ipa, u8)>,
    /// Table entries changed during the current op: (vm, first IPA, level).
    pub table_changes: Vec<(u8, Ipa, u8)>,
    /// Memory-owning targets: each allocated page's content as last seen.
    shadow: Vec<Option<Box<[u64; 512]>>>,
    /// Memory-owning targets: the pages whose memory the target asked for
    /// ([`Services::table_memory`]) during the current op, which with the roots are the only
    /// pages it can have written (`exposed_at[i] == window` while page i is in the list).
    exposed: Vec<u32>,
    exposed_at: Vec<u32>,
    window: u32,
    /// Shadow pages to reuse.
    spare: Vec<Box<[u64; 512]>>,
    /// The target's code ran during this sequence (its memory can have changed).
    pub target_called: bool,
    /// ... during this op.
    pub called_this_op: bool,
    found: Vec<Detail>,
    /// Scratch of the leak check: pages a target holds outside its tables.
    kept: Vec<bool>,
    /// State feedback for the fuzzers (off unless a fuzz target turns families on).
    pub feedback: Feedback,
    /// The target allocates VMIDs in generations (it offers `update_vmid`): a TLBI of every
    /// VMID starts a new one. A target with fixed VMIDs keeps them across it.
    generations: bool,
}

impl<M: Machine> Host<M> {
    /// A host over `machine` for `config` and the target described by `info`.
    pub fn new(machine: M, config: &Config, info: &TargetInfo, record: bool) -> Self {
        let mut h = Host {
            machine,
            layout: config.layout,
            geometry: info.geometry,
            rules: Rules {
                profile: info.geometry.profile,
                blocks: info.blocks,
                refcounted: info.refcounted,
                device_memattr: info.attrs.device_memattr,
            },
            observe: info.observe,
            prepares_tables: info.prepares_tables,
            non_coherent: false,
            record,
            pool: Pool::default(),
            op: 0,
            op_vm: 0,
            alloc_failed: false,
            allocs_this_op: 0,
            links_this_op: 0,
            destroying: None,
            events: Vec::new(),
            violations: Vec::new(),
            tlb: TlbProtocol::default(),
            bbm: Bbm::default(),
            vmids: VmidOracle::default(),
            vm_vmid: [Vmid(0); MAX_VMS],
            roots: [None; MAX_VMS],
            touched: Vec::new(),
            dirty_pages: Vec::new(),
            leaf_writes: Vec::new(),
            table_changes: Vec::new(),
            shadow: Vec::new(),
            exposed: Vec::new(),
            exposed_at: Vec::new(),
            window: 1,
            spare: Vec::new(),
            target_called: false,
            called_this_op: false,
            found: Vec::new(),
            kept: Vec::new(),
            feedback: Feedback::default(),
            generations: false,
        };
        h.reset(config, info);
        h
    }

    /// Back to the state of a fresh boot, reusing allocations. Cost follows the pages used.
    pub fn reset(&mut self, config: &Config, info: &TargetInfo) {
        // Shadows exist only below the pool's high-water mark.
        let high = self.pool.high.min(self.shadow.len());
        for s in &mut self.shadow[..high] {
            if let Some(b) = s.take() {
                self.spare.push(b);
            }
        }
        self.geometry = info.geometry;
        self.rules = Rules {
            profile: info.geometry.profile,
            blocks: info.blocks,
            refcounted: info.refcounted,
            device_memattr: info.attrs.device_memattr,
        };
        self.observe = info.observe;
        self.prepares_tables = info.prepares_tables;
        self.generations = info.offers(&crate::op::Op::UpdateVmid { vm: 0 });
        self.machine.reset(config, &info.geometry, self.pool.high);
        self.pool.reset();
        self.layout = config.layout;
        self.non_coherent = config.walker == Walker::NonCoherent;
        let obs = Observation {
            barriers: info.barriers_observed,
            tlbi_completes: info.tlbi_completes,
            diffed: info.observe == Observe::MemoryOwning,
        };
        self.bbm.reset(config.strict_bbm, info.geometry.profile, obs);
        self.tlb.reset(info.barriers_observed);
        self.vmids.reset();
        self.op = 0;
        self.op_vm = 0;
        self.alloc_failed = false;
        self.destroying = None;
        self.events.clear();
        self.violations.clear();
        self.vm_vmid = [Vmid(0); MAX_VMS];
        self.roots = [None; MAX_VMS];
        self.touched.clear();
        self.dirty_pages.clear();
        self.leaf_writes.clear();
        self.table_changes.clear();
        if self.observe == Observe::MemoryOwning && self.shadow.is_empty() {
            self.shadow.resize_with(POOL_PAGES, || None);
            self.exposed_at.resize(POOL_PAGES, 0);
        }
        self.exposed.clear();
        self.window = self.window.wrapping_add(1);
        self.feedback.reset();
        self.target_called = false;
    }

    /// Turns event recording on or off.
    pub fn set_record(&mut self, record: bool) {
        self.record = record;
    }

    /// The geometry of the target's tables.
    pub const fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Starts op `op`, acting on `vm`.
    pub fn begin_op(&mut self, op: u32, vm: u8) {
        // The target's pointers from the last op are gone with its call.
        self.exposed.clear();
        self.window = self.window.wrapping_add(1);
        self.called_this_op = false;
        self.op = op;
        self.op_vm = vm;
        self.alloc_failed = false;
        self.allocs_this_op = 0;
        self.links_this_op = 0;
        self.leaf_writes.clear();
        self.table_changes.clear();
        self.bbm.begin_op();
    }

    /// Records an event (when recording).
    pub fn event(&mut self, e: Event) {
        if self.record {
            self.events.push(e);
        }
    }

    fn violation(&mut self, detail: Detail) {
        self.violations.push(Violation { op: self.op, detail });
    }

    fn flush_found(&mut self) {
        if self.found.is_empty() {
            return;
        }
        let op = self.op;
        self.violations.extend(self.found.drain(..).map(|detail| Violation { op, detail }));
    }

    /// Makes the `nth` allocation from now fail.
    pub fn fail_allocation(&mut self, nth: u32) {
        self.pool.fail_allocation(nth);
    }

    /// Declares `root` (the geometry's root pages) the root of `vm`.
    pub fn register_root(&mut self, vm: u8, root: Pa) {
        let g = self.geometry;
        for k in 0..g.root_pages() {
            if let Some(i) = self.layout.pool_index(root.add(k * PAGE_SIZE)) {
                let p = &mut self.pool.pages[i];
                p.table = true;
                p.root = true;
                p.level = g.start_level;
                p.vm = vm;
                p.ipa = k * 512 * level_size(g.start_level);
            }
        }
        self.roots[vm as usize] = Some(root);
        self.vm_vmid[vm as usize] = Vmid(0);
        // A memory-owning target may have filled its root before it was known as one.
        if self.observe == Observe::MemoryOwning {
            if let Some(i) = self.layout.pool_index(root) {
                self.adopt(i);
            }
        }
    }

    /// Forgets `vm` after its destruction.
    pub fn forget_vm(&mut self, vm: u8) {
        self.roots[vm as usize] = None;
        self.tlb.forget(vm);
        self.bbm.forget(vm);
        self.vmids.destroyed(vm);
    }

    /// Tells the oracles which VMID `vm` now has.
    pub fn set_vmid(&mut self, vm: u8, vmid: Vmid) {
        self.vm_vmid[vm as usize] = vmid;
    }

    /// The VMID `vm` runs with, as the oracles know it.
    pub fn vmid_of(&self, vm: u8) -> Vmid {
        self.vm_vmid[vm as usize]
    }

    /// The roots of the live VMs.
    pub fn roots(&self) -> &[Option<Pa>; MAX_VMS] {
        &self.roots
    }

    /// End of an op: the diff of a memory-owning target's tables, then the refcount check
    /// of every touched table page.
    pub fn end_op(&mut self) {
        self.sync();
        if self.rules.refcounted {
            let touched = core::mem::take(&mut self.touched);
            let pages = self.geometry.root_pages() as usize;
            structure::check_refcounts(
                &mut self.pool.pages,
                &self.layout,
                &touched,
                &self.roots,
                pages,
                &mut self.found,
            );
            self.touched = touched;
        }
        self.touched.clear();
        self.flush_found();
        if self.feedback.families != 0 {
            self.feedback.hit(Family::Tables, 132 + bucket(u64::from(self.allocs_this_op), 7));
            let fb = &mut self.feedback;
            self.bbm.each(|step, level| fb.hit(Family::Bbm, usize::from(level) * 8 + step));
        }
    }

    /// Oracle checks for `vm` entering the guest or accessing memory: no pending TLB
    /// invalidation, and (non-coherent walker) no uncleaned line of its tables.
    pub fn check_guest_runs(&mut self, vm: u8) {
        let vmid = self.vm_vmid[vm as usize];
        if self.feedback.on(Family::Pending) {
            let (fresh, partial) = self.tlb.counts(vm);
            self.feedback.hit(Family::Pending, 128 + bucket(fresh, 3) * 4 + bucket(partial, 3));
        }
        if let Some(d) = self.tlb.guest_runs(vm, vmid) {
            self.violation(d);
        }
        if self.non_coherent {
            if let Some(d) = cache::guest_runs(&mut self.pool.pages, &self.layout, &self.dirty_pages, vm) {
                self.violation(d);
            }
        }
    }

    /// Pages allocated and unreachable, with `kept` (pages the target legitimately holds
    /// outside its tables, such as vCPU caches) exempt; `only` limits the check to one VM's
    /// pages, otherwise it covers the live VMs. Returns the kept pages that are not
    /// allocated, unused pages.
    pub fn check_leaks(&mut self, live: &[bool], kept: &[Pa], only: Option<u8>) -> Option<Pa> {
        let mut bad = None;
        self.kept.clear();
        self.kept.resize(self.pool.high, false);
        for pa in kept {
            match self.layout.pool_index(*pa).filter(|&i| i < self.pool.high) {
                Some(i) if self.pool.pages[i].allocated && !self.pool.pages[i].table => self.kept[i] = true,
                _ => {
                    bad.get_or_insert(*pa);
                }
            }
        }
        let scope =
            |vm: u8| only.map_or_else(|| live.get(vm as usize).copied().unwrap_or(false), |o| o == vm);
        for (vm, pages, first) in structure::leaks(&self.pool.pages, self.pool.high, live, &self.kept, scope)
        {
            let first = self.layout.pool_page(first);
            self.violation(Detail::Leak { vm, pages, first });
        }
        bad
    }

    /// Bytes mapped by valid leaves in tables reachable from `vm`'s root, as the observed
    /// writes left them: O(pages) instead of a walk of every entry.
    pub fn reachable_bytes(&self, vm: u8) -> u64 {
        let pages = &self.pool.pages;
        let reachable = |start: &Page| {
            let mut p = *start;
            for _ in 0..5 {
                if !(p.allocated && p.table && p.vm == vm) {
                    return false;
                }
                if p.root {
                    return true;
                }
                match self.layout.pool_index(Pa(p.parent)) {
                    Some(i) => p = pages[i],
                    None => return false,
                }
            }
            false
        };
        pages[..self.pool.high]
            .iter()
            .filter(|p| p.leaves != 0 && reachable(p))
            .map(|p| u64::from(p.leaves) * level_size(p.level))
            .sum()
    }

    /// The VM that allocated the pool page holding `pa`.
    pub fn pool_owner(&self, pa: Pa) -> Option<u8> {
        self.layout.pool_index(pa).map(|i| self.pool.pages[i].vm)
    }

    /// Pages in use: allocated now, and ever since the last reset.
    pub fn pool_usage(&self) -> (usize, usize) {
        self.pool.usage()
    }

    /// Reads table memory for the oracles (no checks, no events). Outside the pool, where no
    /// table can be and hardware may fault, it reads poison.
    #[inline]
    pub fn peek(&mut self, pa: Pa) -> u64 {
        match self.layout.pool_index(pa) {
            Some(i) => self.machine.read_pool(i, (pa.page_offset() / 8) as usize, pa),
            None => POISON,
        }
    }

    fn touch(&mut self, i: usize) {
        if self.pool.pages[i].touched_at != self.op + 1 {
            self.pool.pages[i].touched_at = self.op + 1;
            self.touched.push(i as u32);
        }
    }

    /// The pool index of a page the target uses, or a violation.
    fn used_page(&mut self, pa: Pa, what: Use) -> Option<usize> {
        match self.layout.pool_index(pa) {
            Some(i) if self.pool.pages[i].allocated => Some(i),
            Some(_) => {
                self.violation(Detail::UseAfterFree { page: pa.page(), what });
                None
            }
            None => {
                self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Stray });
                None
            }
        }
    }

    fn free_one(&mut self, pa: Pa, head_order: Option<u32>) {
        let Some(i) = self.layout.pool_index(pa) else {
            return self.violation(Detail::BadFree { page: pa, problem: FreeProblem::NotAllocated });
        };
        let p = self.pool.pages[i];
        let destroying = self.destroying == Some(p.vm);
        let problem = if !p.allocated {
            Some(FreeProblem::NotAllocated)
        } else if !destroying && p.parent != 0 {
            Some(FreeProblem::StillLinked)
        } else if !destroying && p.root && self.roots[p.vm as usize].is_some() {
            Some(FreeProblem::LiveRoot)
        } else if head_order.is_some_and(|o| !p.head || u32::from(p.order) != o) {
            Some(FreeProblem::WrongOrder)
        } else {
            None
        };
        if let Some(problem) = problem {
            self.violation(Detail::BadFree { page: pa, problem });
            if !p.allocated {
                return;
            }
        }
        if let Some(d) = self.tlb.table_freed(pa) {
            self.violation(d);
        }
        if p.table {
            self.feedback.hit(Family::Tables, 128 + usize::from(p.level & 3));
        }
        self.pool.release(i);
        if let Some(b) = self.shadow.get_mut(i).and_then(Option::take) {
            self.spare.push(b);
        }
        if p.dirty_content {
            self.machine.fill_page(pa, POISON);
        }
    }
}

mod observe;
mod services;
