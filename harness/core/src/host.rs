//! The shared platform layer: [`Services`] over a [`Machine`]. It owns the page pool, the
//! event log and the incremental state of the structure, TLB-protocol, break-before-make,
//! VMID and cache-protocol oracles, so the simulator and the ARM images check and record
//! exactly the same things. Instrumented targets report every write here; for
//! memory-owning targets the layer diffs their table pages at every maintenance operation
//! and at the end of each op ([`Host::sync`]).

use crate::arch::desc::Entry;
use crate::arch::tlb::Tlbi;
use crate::arch::{level_size, Desc, Geometry, Ipa, Pa, Vmid, PAGE_SIZE};
use crate::event::{Event, Warning};
use crate::feedback::{bucket, Family, Feedback};
use crate::layout::{Layout, POISON, POOL_PAGES};
use crate::machine::Machine;
use crate::op::{Config, Walker, MAX_VMS};
use crate::oracle::bbm::{Bbm, Observation};
use crate::oracle::cache;
use crate::oracle::structure::{self, Rules};
use crate::oracle::tlb::TlbProtocol;
use crate::oracle::vmid::VmidOracle;
use crate::pool::{AllocFail, Page, Pool};
use crate::target::{Observe, Services, TargetInfo};
use crate::violation::{Detail, FreeProblem, Malformation, Use, Violation};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;

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
}

impl<M: Machine> Host<M> {
    /// A host over `machine` for `config` and the target described by `info`.
    pub fn new(machine: M, config: &Config, info: &TargetInfo, record: bool) -> Self {
        let mut h = Host {
            machine,
            layout: config.layout,
            geometry: info.geometry,
            rules: Rules { profile: info.geometry.profile, blocks: info.blocks, refcounted: info.refcounted },
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
        self.rules =
            Rules { profile: info.geometry.profile, blocks: info.blocks, refcounted: info.refcounted };
        self.observe = info.observe;
        self.prepares_tables = info.prepares_tables;
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

    /// A descriptor at `pa` (page `i`) went from `old` to `new`: the event, then every oracle.
    /// `checked` is false for writes into a page that is not (yet) a table of a
    /// memory-owning target, which may fill a table before linking it.
    fn observed(&mut self, i: usize, pa: Pa, old: Desc, new: Desc, checked: bool) {
        self.pool.pages[i].dirty_content = true;
        self.event(Event::Write { pa, old, new });
        let page = self.pool.pages[i];
        if !page.allocated {
            return self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Write });
        }
        let profile = self.rules.profile;
        let level = page.level;
        let leaf = |d: Desc| u16::from(page.table && profile.is_leaf(level, d));
        let p = &mut self.pool.pages[i];
        p.valid = (i32::from(p.valid) + i32::from(new.is_valid()) - i32::from(old.is_valid())) as u16;
        p.leaves = (i32::from(p.leaves) + i32::from(leaf(new)) - i32::from(leaf(old))) as u16;
        if !page.table {
            if checked {
                self.violation(Detail::Malformed {
                    at: pa,
                    level: 0,
                    desc: new,
                    problem: Malformation::NotATable,
                });
            }
            return;
        }
        self.touch(i);
        if self.feedback.on(Family::Tables) {
            let kind = |d: Desc| match profile.decode(level, d) {
                Entry::Invalid | Entry::Reserved => 0,
                Entry::Leaf(_) if level == 3 => 1,
                Entry::Leaf(_) => 2,
                Entry::Table { .. } => 3,
            };
            let l = usize::from(level & 3);
            let (ko, kn) = (kind(old), kind(new));
            self.feedback.hit(Family::Tables, l * 16 + ko * 4 + kn);
            let valid = u64::from(self.pool.pages[i].valid);
            self.feedback.hit(Family::Tables, 64 + l * 16 + bucket(valid, 10));
            let ipa = structure::entry_ipa(&page, pa.page_offset());
            self.feedback.table_written(level, ipa.0, kn);
        }
        let (vm, ipa) = (page.vm, structure::entry_ipa(&page, pa.page_offset()));
        if self.non_coherent {
            cache::written(&mut self.pool.pages[i], i, pa.page_offset(), self.op, &mut self.dirty_pages);
        }
        if old == new {
            return;
        }
        if old.is_table(level) {
            if let Entry::Table { next, .. } = profile.decode(level, old) {
                if let Some(c) = self.layout.pool_index(next) {
                    structure::unlink(&mut self.pool.pages, c, pa);
                }
            }
        }
        let linked = structure::check_new(
            &mut self.pool.pages,
            &self.layout,
            &self.rules,
            pa,
            level,
            vm,
            ipa,
            new,
            &mut self.found,
        );
        if let Some(c) = linked {
            self.links_this_op += 1;
            self.touch(c);
            if self.observe == Observe::MemoryOwning || self.pool.pages[c].valid > 0 {
                self.adopt(c);
            }
        }
        if old.is_valid() {
            self.tlb.changed(vm, level, self.op, ipa, old);
        }
        let vmid = self.vm_vmid[vm as usize];
        if let Some(d) = self.bbm.write(pa, vm, vmid, ipa, level, old, new) {
            self.found.push(d);
        }
        if new.is_table(level) || old.is_table(level) {
            self.table_changes.push((vm, ipa, level));
        } else {
            self.leaf_writes.push((vm, ipa, level));
        }
        self.flush_found();
    }

    /// The target linked table page `c`, which it may have filled while it was not yet
    /// linked: its valid entries are checked as new ones now that their level is known. A
    /// memory-owning target's page is read from its shadow, an instrumented one's (which
    /// has valid entries) from memory.
    fn adopt(&mut self, c: usize) {
        // The valid words only (a new table is usually empty: no 4 KiB copy for it).
        let valid: Vec<(usize, u64)> = match self.shadow.get(c).and_then(|s| s.as_deref()) {
            Some(shadow) => {
                shadow.iter().enumerate().filter(|(_, &d)| Desc(d).is_valid()).map(|(w, &d)| (w, d)).collect()
            }
            None if self.observe == Observe::MemoryOwning => return,
            None => {
                let base = self.layout.pool_page(c);
                (0..512)
                    .map(|w| (w, self.machine.read_pool(c, w, base.add(w as u64 * 8))))
                    .filter(|(_, d)| Desc(*d).is_valid())
                    .collect()
            }
        };
        let page = self.pool.pages[c];
        let profile = self.rules.profile;
        let mut leaves = 0u16;
        for (w, d) in valid {
            let d = Desc(d);
            let pa = self.layout.pool_page(c).add(w as u64 * 8);
            let ipa = structure::entry_ipa(&page, w as u64 * 8);
            leaves += u16::from(matches!(profile.decode(page.level, d), Entry::Leaf(_)));
            let linked = structure::check_new(
                &mut self.pool.pages,
                &self.layout,
                &self.rules,
                pa,
                page.level,
                page.vm,
                ipa,
                d,
                &mut self.found,
            );
            if let Some(g) = linked {
                self.adopt(g);
            }
            if d.is_table(page.level) {
                self.table_changes.push((page.vm, ipa, page.level));
            } else {
                self.leaf_writes.push((page.vm, ipa, page.level));
            }
        }
        self.pool.pages[c].leaves = leaves;
        self.flush_found();
    }

    /// Memory-owning targets: turns every change in their table pages since the last sync
    /// into write events, parents before children (so a new table's level is known when its
    /// entries are checked), page by page in address order. Only the pages the target can
    /// have written are compared: those it got a pointer to during this op, and the roots
    /// (whose pointers it keeps). [`Host::sync_all`] compares every page.
    pub fn sync(&mut self) {
        if self.observe != Observe::MemoryOwning || !self.called_this_op {
            return;
        }
        let pages = self.writable_pages(None);
        self.sync_pages(pages.into_iter());
    }

    /// Every table page compared with its shadow: the end of a sequence's safety net for a
    /// target that wrote through a pointer it kept from an earlier op.
    pub fn sync_all(&mut self) {
        if self.observe == Observe::MemoryOwning && self.target_called {
            self.sync_pages(0..self.pool.high);
        }
    }

    /// The pages a memory-owning target can have written in this op (of `vm`, or of all),
    /// in address order: those it got pointers to, and the root of `vm` (else of the VM the
    /// op is for: a call for one VM cannot reach another's root, whose pointer that VM's
    /// mapping keeps).
    fn writable_pages(&self, vm: Option<u8>) -> Vec<usize> {
        let mut pages: Vec<usize> = self
            .exposed
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| vm.is_none_or(|v| self.pool.pages[i].vm == v))
            .collect();
        let of = vm.unwrap_or(self.op_vm);
        for (v, root) in self.roots.iter().enumerate() {
            if let (Some(root), true) = (root, of as usize == v) {
                let first = self.layout.pool_index(*root);
                pages.extend(first.into_iter().flat_map(|i| i..i + self.geometry.root_pages() as usize));
            }
        }
        pages.sort_unstable();
        pages.dedup();
        pages
    }

    /// Before a TLBI for `vmid`: the changes in the tables of its VM. A call changes the
    /// tables of the VM it is for (a write anywhere else is still seen, at the end of the
    /// op). A target issues one TLBI per page it changes, and a diff of every VM's tables
    /// at each would cost more than the op.
    fn sync_vmid(&mut self, vmid: Vmid) {
        if self.observe != Observe::MemoryOwning {
            return;
        }
        match (0..MAX_VMS).find(|&v| self.vm_vmid[v] == vmid && self.roots[v].is_some()) {
            Some(vm) => self.sync_vm(vm as u8),
            None => self.sync(),
        }
    }

    /// Before a TLBI by IPA: only the descriptors on the IPA's walk path can be ordered
    /// against it by any oracle (a TLBI by IPA covers what was cached from the entries that
    /// translate it). When none of them changed since the last look, nothing needs to be
    /// seen now: a write elsewhere is neither covered by this TLBI nor changes what it
    /// covers, and it is seen at the next look. When one did, every page the target can have
    /// written is compared, so writes keep their order against the maintenance around them.
    /// A target that writes a range and then invalidates it page by page is compared once,
    /// then checked in O(levels) per TLBI.
    fn sync_path(&mut self, vmid: Vmid, ipa: Ipa) {
        if self.observe != Observe::MemoryOwning {
            return;
        }
        let Some(vm) = (0..MAX_VMS).find(|&v| self.vm_vmid[v] == vmid && self.roots[v].is_some()) else {
            return self.sync();
        };
        let g = self.geometry;
        if ipa.0 >= g.ipa_limit() {
            return;
        }
        // The path through the tables as written and, where an entry changed, through the
        // tables as last seen (a write into a table unlinked meanwhile counts too).
        let mut changed = Vec::new();
        let mut todo = alloc::vec![(self.roots[vm].unwrap_or(Pa(0)), g.start_level)];
        while let Some((table, level)) = todo.pop() {
            let at = table.add(g.index(level, ipa) as u64 * 8);
            let Some(i) = self.layout.pool_index(at) else { continue };
            let w = ((at.0 % PAGE_SIZE) / 8) as usize;
            let Some(old) = self.shadow.get(i).and_then(|s| s.as_deref()).map(|s| s[w]) else { continue };
            let new = self.machine.read_pool(i, w, at);
            for d in [new, old].into_iter().take(if new == old { 1 } else { 2 }) {
                if let (Entry::Table { next, .. }, true) = (g.profile.decode(level, Desc(d)), level < 3) {
                    todo.push((next, level + 1));
                }
            }
            if new != old {
                changed.push(i);
            }
        }
        if !changed.is_empty() {
            let mut pages = self.writable_pages(Some(vm as u8));
            pages.extend(changed);
            pages.sort_unstable();
            pages.dedup();
            self.sync_pages(pages.into_iter());
        }
    }

    /// The changes in the tables of `vm` (including those allocated for it in this op).
    fn sync_vm(&mut self, vm: u8) {
        let pages = self.writable_pages(Some(vm));
        self.sync_pages(pages.into_iter());
    }

    fn sync_pages(&mut self, pages: impl Iterator<Item = usize>) {
        // Per changed page: its index and (word, old, new) of each changed word.
        let mut changed: Vec<(usize, Diffs)> = Vec::new();
        for i in pages {
            let Some(shadow) = self.shadow.get(i).and_then(|s| s.as_deref()) else { continue };
            let mut diffs = Vec::new();
            self.machine.diff_page(i, shadow, &mut diffs);
            if !diffs.is_empty() {
                changed.push((i, diffs));
            }
        }
        self.emit(changed);
    }

    /// Write events for changed words, parents before children.
    fn emit(&mut self, mut changed: Vec<(usize, Diffs)>) {
        while !changed.is_empty() {
            let pages = &self.pool.pages;
            let next = changed
                .iter()
                .enumerate()
                .filter(|(_, (i, _))| pages[*i].table)
                .min_by_key(|(_, (i, _))| pages[*i].level)
                .map(|(k, _)| k);
            let (i, diffs, checked) = match next {
                Some(k) => {
                    let (i, d) = changed.remove(k);
                    (i, d, true)
                }
                None => {
                    let (i, d) = changed.remove(0);
                    (i, d, false)
                }
            };
            for (w, old, new) in diffs {
                // The shadow moves word by word, so a table linked meanwhile is adopted with
                // what it held before this window, and its own changes follow as writes.
                if let Some(s) = self.shadow[i].as_deref_mut() {
                    s[w] = new;
                }
                let pa = self.layout.pool_page(i).add(w as u64 * 8);
                self.observed(i, pa, Desc(old), Desc(new), checked);
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

impl<M: Machine> Services for Host<M> {
    fn layout(&self) -> Layout {
        self.layout
    }

    fn new_root(&mut self, root: Pa) {
        self.register_root(self.op_vm, root);
    }

    fn alloc_pages(&mut self, order: u32) -> Option<Pa> {
        let i = match self.pool.take(order) {
            Ok(i) => i,
            Err(why) => {
                self.alloc_failed = true;
                self.event(Event::AllocFail { order: order as u8, injected: why == AllocFail::Injected });
                return None;
            }
        };
        let n = 1usize << order;
        let dirty = if self.non_coherent { u64::MAX } else { 0 };
        for j in 0..n {
            if self.pool.pages[i + j].dirty_content {
                self.machine.fill_page(self.layout.pool_page(i + j), 0);
            }
            self.pool.pages[i + j] = Page {
                allocated: true,
                head: j == 0,
                order: order as u8,
                count: u32::from(j == 0),
                vm: self.op_vm,
                dirty,
                dirty_since: self.op,
                ..Page::default()
            };
            if dirty != 0 {
                self.dirty_pages.push((i + j) as u32);
            }
            if self.observe == Observe::MemoryOwning {
                let mut b = self.spare.pop().unwrap_or_else(|| Box::new([0; 512]));
                b.fill(0);
                self.shadow[i + j] = Some(b);
            }
        }
        if order == 0 {
            self.allocs_this_op += 1;
        }
        let pa = self.layout.pool_page(i);
        self.event(Event::Alloc { pa, order: order as u8 });
        Some(pa)
    }

    fn free_pages(&mut self, pa: Pa, order: u32) {
        // What the target wrote before the free, in the tables of the VM that owns the page
        // (a VM's tables change only in calls for it; the end of the op diffs everything).
        match self.layout.pool_index(pa).filter(|_| self.observe == Observe::MemoryOwning) {
            Some(i) => self.sync_vm(self.pool.pages[i].vm),
            None => self.sync(),
        }
        for j in 0..1u64 << order {
            self.free_one(pa.add(j * PAGE_SIZE), (j == 0).then_some(order));
        }
        self.event(Event::Free { pa, order: order as u8 });
    }

    fn get_page(&mut self, pa: Pa) {
        if let Some(i) = self.used_page(pa, Use::Refcount) {
            self.pool.pages[i].count += 1;
            self.touch(i);
            let count = self.pool.pages[i].count;
            self.event(Event::Get { pa: pa.page(), count });
        }
    }

    fn put_page(&mut self, pa: Pa) {
        if let Some(i) = self.used_page(pa, Use::Refcount) {
            let count = self.pool.pages[i].count.saturating_sub(1);
            self.pool.pages[i].count = count;
            self.touch(i);
            self.event(Event::Put { pa: pa.page(), count });
            if count == 0 {
                // As in Linux: the last reference frees the page.
                self.free_pages(pa.page(), 0);
            }
        }
    }

    fn page_count(&mut self, pa: Pa) -> u32 {
        self.used_page(pa, Use::Refcount).map_or(0, |i| self.pool.pages[i].count)
    }

    #[inline]
    fn read_desc(&mut self, pa: Pa) -> Desc {
        match self.layout.pool_index(pa) {
            Some(i) => {
                if !self.pool.pages[i].allocated {
                    self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Read });
                }
                Desc(self.machine.read_pool(i, (pa.page_offset() / 8) as usize, pa))
            }
            None => {
                // Never touch memory outside the pool: on hardware it may not exist.
                self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Stray });
                Desc(POISON)
            }
        }
    }

    fn write_desc(&mut self, pa: Pa, new: Desc) {
        let Some(i) = self.layout.pool_index(pa) else {
            return self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Stray });
        };
        let old = Desc(self.machine.read_pool(i, (pa.page_offset() / 8) as usize, pa));
        self.machine.write(pa, new.0);
        self.observed(i, pa, old, new, !self.prepares_tables);
    }

    fn clean_dcache(&mut self, pa: Pa, len: u64) {
        self.machine.clean(pa, len);
        self.event(Event::Clean { pa, len: len as u32 });
        if self.non_coherent {
            cache::cleaned(&mut self.pool.pages, &self.layout, pa, len);
        }
        // The platform's clean ends with a DSB.
        self.tlb.dsb();
        self.bbm.dsb();
    }

    fn tlbi(&mut self, op: Tlbi) {
        match op {
            Tlbi::Ipas2 { vmid, ipa } => self.sync_path(vmid, ipa),
            Tlbi::Vmalle1(vmid) | Tlbi::Vmalls12e1(vmid) | Tlbi::Vmid(vmid) => self.sync_vmid(vmid),
            Tlbi::All => self.sync(),
        }
        self.machine.tlbi(op);
        self.event(Event::Tlbi(op));
        let before = self.feedback.on(Family::Pending).then(|| self.tlb.total());
        self.tlb.tlbi(op, &self.vm_vmid, &mut self.found);
        if let Some(before) = before {
            let scope = match op {
                Tlbi::Ipas2 { .. } => 0,
                Tlbi::Vmalle1(_) => 1,
                Tlbi::Vmalls12e1(_) => 2,
                Tlbi::Vmid(_) => 3,
                Tlbi::All => 4,
            };
            let after = self.tlb.total();
            let reached = bucket(before - after, 3);
            self.feedback.hit(Family::Pending, scope * 16 + reached * 4 + bucket(after, 3));
        }
        self.bbm.tlbi(op, &self.vm_vmid);
        match op {
            Tlbi::All => self.vmids.rollover(),
            Tlbi::Vmid(v) | Tlbi::Vmalls12e1(v) => {
                let mut live = self.roots.map(|r| r.is_some());
                if let Some(d) = self.destroying {
                    live[d as usize] = false;
                }
                self.vmids.invalidated(v, &live);
            }
            _ => {}
        }
        self.flush_found();
    }

    fn dsb(&mut self) {
        self.machine.dsb();
        self.event(Event::Dsb);
        self.tlb.dsb();
        self.bbm.dsb();
    }

    fn warn(&mut self, warning: Warning) {
        self.event(Event::Warn { warning });
        self.violation(Detail::Warn { warning });
    }

    fn table_memory(&mut self, pa: Pa) -> Option<NonNull<u64>> {
        let i = self.layout.pool_index(pa)?;
        if let Some(e) = self.exposed_at.get_mut(i) {
            if *e != self.window {
                *e = self.window;
                self.exposed.push(i as u32);
            }
        }
        self.machine.page_ptr(i)
    }
}
