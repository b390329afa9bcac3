//! The shared platform layer: `mmu::Platform` over a [`Machine`]. It owns the deterministic
//! page pool, kernel-like refcounts, the event log, and the incremental bookkeeping of the
//! structure, TLB-protocol and cache-protocol oracles, so both the simulator and the ARM
//! image check and record exactly the same things.

use crate::event::Event;
use crate::layout::{Layout, POISON, POOL_PAGES};
use crate::machine::Machine;
use crate::op::{Config, Walker, MAX_VMS};
use crate::violation::{Detail, FreeProblem, Malformation, Use, Violation};
use alloc::vec::Vec;
use mmu::addr::{level_size, LEAF_LEVEL, PAGE_SIZE};
use mmu::{Descriptor, Ipa, MemType, Pa, Platform, Vmid, Warning};

const LINE: u64 = 64;

#[derive(Clone, Copy, Default)]
struct Page {
    allocated: bool,
    /// First page of an allocation, and its order.
    head: bool,
    order: u8,
    count: u32,
    /// 0: not a table; 1: a root page; 2, 3: a linked table of that level.
    level: u8,
    /// The VM that allocated or linked it.
    vm: u8,
    /// The entry linking this table (0: none).
    parent: u64,
    /// First IPA this table translates.
    ipa: u64,
    valid: u16,
    /// Dirty 64-byte lines (non-coherent walker mode).
    dirty: u64,
    dirty_since: u32,
    touched_at: u32,
    /// A refcount mismatch on this page was reported and has not been repaired since.
    reported: bool,
    /// The content may be nonzero (written, or poisoned). A page that is known to be zero
    /// needs no zeroing when allocated and no poison when freed: nothing can have read a
    /// value from it that poison would hide.
    dirty_content: bool,
}

/// A change to a valid entry that no TLB invalidation has covered yet.
#[derive(Clone, Copy, Debug)]
struct Pending {
    vm: u8,
    level: u8,
    op: u32,
    ipa: Ipa,
    old: Descriptor,
}

/// `mmu::Platform` for the executor.
pub struct Host<M: Machine> {
    /// The machine below.
    pub machine: M,
    layout: Layout,
    non_coherent: bool,
    strict_bbm: bool,
    record: bool,
    pages: Vec<Page>,
    /// Pages at or above this index were never allocated since the last reset: the bump
    /// pointer of the allocator.
    high: usize,
    /// Freed single pages, most recently freed last (reused first, like the kernel's hot
    /// pages). The pool does not coalesce: a multi-page block comes from the bump pointer.
    free: Vec<u32>,
    attempts: u64,
    fail_at: Option<u64>,
    op: u32,
    op_vm: u8,
    /// An allocation failed during the current op.
    pub alloc_failed: bool,
    /// The VM being destroyed, whose linked tables and root may be freed.
    pub destroying: Option<u8>,
    /// Events of the current op (when recording).
    pub events: Vec<Event>,
    /// Violations found during the current op.
    pub violations: Vec<Violation>,
    pending: Vec<Pending>,
    vm_vmid: [Vmid; MAX_VMS],
    roots: [Option<Pa>; MAX_VMS],
    /// Number of flushes of every guest TLB entry so far (VMID rollovers).
    pub rollovers: u32,
    touched: Vec<u32>,
    dirty_pages: Vec<u32>,
    /// Level-3 entries written during the current op.
    pub leaf_writes: Vec<(u8, Ipa)>,
    /// Level-1/2 entries changed during the current op: (vm, first IPA, level).
    pub table_changes: Vec<(u8, Ipa, u8)>,
}

impl<M: Machine> Host<M> {
    /// A host over `machine` for `config`.
    pub fn new(machine: M, config: &Config, record: bool) -> Self {
        let mut h = Host {
            machine,
            layout: config.layout,
            non_coherent: false,
            strict_bbm: false,
            record,
            pages: alloc::vec![Page::default(); POOL_PAGES],
            high: 0,
            free: Vec::new(),
            attempts: 0,
            fail_at: None,
            op: 0,
            op_vm: 0,
            alloc_failed: false,
            destroying: None,
            events: Vec::new(),
            violations: Vec::new(),
            pending: Vec::new(),
            vm_vmid: [Vmid(0); MAX_VMS],
            roots: [None; MAX_VMS],
            rollovers: 0,
            touched: Vec::new(),
            dirty_pages: Vec::new(),
            leaf_writes: Vec::new(),
            table_changes: Vec::new(),
        };
        h.reset(config);
        h
    }

    /// Back to the state of a fresh boot, reusing allocations. Cost follows the pages used.
    pub fn reset(&mut self, config: &Config) {
        self.machine.reset(config, self.high);
        for p in &mut self.pages[..self.high] {
            *p = Page::default();
        }
        self.layout = config.layout;
        self.non_coherent = config.walker == Walker::NonCoherent;
        self.strict_bbm = config.strict_bbm;
        self.high = 0;
        self.free.clear();
        self.attempts = 0;
        self.fail_at = None;
        self.op = 0;
        self.op_vm = 0;
        self.alloc_failed = false;
        self.destroying = None;
        self.events.clear();
        self.violations.clear();
        self.pending.clear();
        self.vm_vmid = [Vmid(0); MAX_VMS];
        self.roots = [None; MAX_VMS];
        self.rollovers = 0;
        self.touched.clear();
        self.dirty_pages.clear();
        self.leaf_writes.clear();
        self.table_changes.clear();
    }

    /// Turns event recording on or off.
    pub fn set_record(&mut self, record: bool) {
        self.record = record;
    }

    /// The layout in force.
    pub const fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Starts op `op`, acting on `vm`.
    pub fn begin_op(&mut self, op: u32, vm: u8) {
        self.op = op;
        self.op_vm = vm;
        self.alloc_failed = false;
        self.leaf_writes.clear();
        self.table_changes.clear();
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

    /// Makes the `nth` allocation from now fail.
    pub fn fail_allocation(&mut self, nth: u32) {
        self.fail_at = Some(self.attempts + u64::from(nth));
    }

    /// Declares `root` (two pages) the root of `vm`.
    pub fn register_root(&mut self, vm: u8, root: Pa) {
        for (half, ipa) in [(0, 0), (1, 512 * level_size(1))] {
            if let Some(i) = self.layout.pool_index(root.add(half * PAGE_SIZE)) {
                let p = &mut self.pages[i];
                p.level = 1;
                p.vm = vm;
                p.ipa = ipa;
            }
        }
        self.roots[vm as usize] = Some(root);
        self.vm_vmid[vm as usize] = Vmid(0);
    }

    /// Forgets `vm` after its destruction: its pending invalidations can no longer matter,
    /// because its VMID never runs again before a rollover.
    pub fn forget_vm(&mut self, vm: u8) {
        self.roots[vm as usize] = None;
        self.pending.retain(|p| p.vm != vm);
    }

    /// Tells the TLB-protocol tracker which VMID `vm` now has.
    pub fn set_vmid(&mut self, vm: u8, vmid: Vmid) {
        self.vm_vmid[vm as usize] = vmid;
    }

    /// End of an op: every touched table page must hold 1 + its valid entries.
    pub fn end_op(&mut self) {
        let touched = core::mem::take(&mut self.touched);
        for &i in &touched {
            let i = i as usize;
            let p = self.pages[i];
            if !p.allocated || p.level == 0 {
                continue;
            }
            let expected = match (p.level, p.head) {
                (1, true) => 1 + u32::from(p.valid) + u32::from(self.pages.get(i + 1).map_or(0, |t| t.valid)),
                (1, false) => 0,
                _ => 1 + u32::from(p.valid),
            };
            let ok = p.count == expected;
            if !ok && !p.reported {
                let page = self.layout.pool_page(i);
                self.violation(Detail::Refcount { page, count: p.count, expected });
            }
            self.pages[i].reported = !ok;
        }
        self.touched = touched;
        self.touched.clear();
    }

    /// Oracle checks for `vm` entering the guest or accessing memory: no pending TLB
    /// invalidation, and (non-coherent walker) no uncleaned line of its tables.
    pub fn check_guest_runs(&mut self, vm: u8) {
        if let Some(p) = self.pending.iter().find(|p| p.vm == vm).copied() {
            let vmid = self.vm_vmid[vm as usize];
            self.violation(Detail::MissingTlbi { vm, vmid, changed_at: p.op, ipa: p.ipa, old: p.old });
            self.pending.retain(|p| p.vm != vm);
        }
        if !self.non_coherent {
            return;
        }
        let mut found = None;
        for &i in &self.dirty_pages {
            let p = &mut self.pages[i as usize];
            if p.allocated && p.level != 0 && p.vm == vm && p.dirty != 0 {
                let line = self.layout.pool_page(i as usize).add(u64::from(p.dirty.trailing_zeros()) * LINE);
                found.get_or_insert((line, p.dirty_since));
                p.dirty = 0;
            }
        }
        if let Some((line, written_at)) = found {
            self.violation(Detail::DcacheNotCleaned { vm, line, written_at });
        }
    }

    /// After `vm` was destroyed: every page it allocated must be free again.
    pub fn check_leaks(&mut self, vm: u8) {
        let mut leaked =
            self.pages[..self.high].iter().enumerate().filter(|(_, p)| p.allocated && p.vm == vm);
        if let Some((first, _)) = leaked.next() {
            let pages = 1 + leaked.count() as u32;
            let first = self.layout.pool_page(first);
            self.violation(Detail::Leak { vm, pages, first });
        }
    }

    /// Valid level-3 entries in tables linked, through a linked level-2 table, into `vm`'s
    /// root: what the writes observed so far left reachable.
    pub fn reachable_leaves(&self, vm: u8) -> usize {
        let linked = |p: &Page, level: u8| p.allocated && p.level == level && p.vm == vm && p.parent != 0;
        let parent = |p: &Page| self.layout.pool_index(Pa(p.parent)).map(|i| &self.pages[i]);
        self.pages[..self.high]
            .iter()
            .filter(|p| linked(p, 3))
            .filter(|p| {
                parent(p).is_some_and(|l2| {
                    linked(l2, 2) && parent(l2).is_some_and(|r| r.allocated && r.level == 1)
                })
            })
            .map(|p| usize::from(p.valid))
            .sum()
    }

    /// Pages in use: allocated now, or ever since the last reset.
    pub fn pool_usage(&self) -> (usize, usize) {
        (self.pages[..self.high].iter().filter(|p| p.allocated).count(), self.high)
    }

    /// Reads table memory for the oracles (no checks, no events). Outside the pool, where
    /// no table can be and hardware may fault, it reads poison.
    #[inline]
    pub fn peek(&mut self, pa: Pa) -> u64 {
        match self.layout.pool_index(pa) {
            Some(i) => self.machine.read_pool(i, (pa.page_offset() / 8) as usize, pa),
            None => POISON,
        }
    }

    fn touch(&mut self, i: usize) {
        if self.pages[i].touched_at != self.op + 1 {
            self.pages[i].touched_at = self.op + 1;
            self.touched.push(i as u32);
        }
    }

    /// The pool index of a page the code under test uses, or a violation.
    fn used_page(&mut self, pa: Pa, what: Use) -> Option<usize> {
        match self.layout.pool_index(pa) {
            Some(i) if self.pages[i].allocated => Some(i),
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

    fn malformed(&mut self, at: Pa, level: u8, desc: Descriptor, problem: Malformation) {
        self.violation(Detail::Malformed { at, level, desc, problem });
    }

    /// Checks a new descriptor and links the table it points to.
    fn check_new(&mut self, at: Pa, level: u8, vm: u8, ipa: Ipa, new: Descriptor) {
        if !new.is_valid() {
            return;
        }
        if level == LEAF_LEVEL {
            let problem = if new.0 & 0b11 == 0b01 || new.0 & Descriptor::LEAF_RES0 != 0 {
                Some(Malformation::Reserved)
            } else if MemType::from_memattr(new.memattr()).is_none() {
                Some(Malformation::MemAttr)
            } else if !new.af() {
                Some(Malformation::NoAccessFlag)
            } else {
                None
            };
            if let Some(problem) = problem {
                self.malformed(at, level, new, problem);
            }
            return;
        }
        if new.is_block(level) {
            return self.malformed(at, level, new, Malformation::Block);
        }
        if new.0 & Descriptor::TABLE_RES0 != 0 {
            self.malformed(at, level, new, Malformation::Reserved);
        }
        let child = new.output_address();
        let Some(c) = self.layout.pool_index(child) else {
            return self.malformed(at, level, new, Malformation::TableOutsidePool);
        };
        let page = self.pages[c];
        if !page.allocated {
            return self.violation(Detail::UseAfterFree { page: child, what: Use::Link });
        }
        if page.level != 0 {
            let first = Pa(page.parent);
            return self.violation(Detail::TableAliased { table: child, first, second: at });
        }
        if page.valid != 0 {
            self.malformed(at, level, new, Malformation::TableNotEmpty);
        }
        let p = &mut self.pages[c];
        p.level = level + 1;
        p.parent = at.0;
        p.vm = vm;
        p.ipa = ipa.0;
        self.touch(c);
    }

    fn free_one(&mut self, pa: Pa, head_order: Option<u32>) {
        let Some(i) = self.layout.pool_index(pa) else {
            return self.violation(Detail::BadFree { page: pa, problem: FreeProblem::NotAllocated });
        };
        let p = self.pages[i];
        let destroying = self.destroying == Some(p.vm);
        let problem = if !p.allocated {
            Some(FreeProblem::NotAllocated)
        } else if !destroying && p.parent != 0 {
            Some(FreeProblem::StillLinked)
        } else if !destroying && p.level == 1 && self.roots[p.vm as usize].is_some() {
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
        if let Some(pending) =
            self.pending.iter().find(|q| q.old.is_table(q.level) && q.old.output_address() == pa)
        {
            let (unlinked_at, ipa) = (pending.op, pending.ipa);
            self.violation(Detail::FreedBeforeTlbi { table: pa, unlinked_at, ipa });
        }
        self.pages[i] = Page { touched_at: p.touched_at, dirty_content: p.dirty_content, ..Page::default() };
        self.free.push(i as u32);
        if p.dirty_content {
            self.machine.fill_page(pa, POISON);
        }
    }
}

impl<M: Machine> Platform for Host<M> {
    fn alloc_pages(&mut self, order: u32) -> Option<Pa> {
        let attempt = self.attempts;
        self.attempts += 1;
        if self.fail_at == Some(attempt) {
            self.fail_at = None;
            self.alloc_failed = true;
            self.event(Event::AllocFail { order: order as u8, injected: true });
            return None;
        }
        let n = 1usize << order;
        let i = match self.free.pop() {
            Some(i) if n == 1 => i as usize,
            popped => {
                self.free.extend(popped);
                let aligned = self.high.next_multiple_of(n);
                if aligned + n <= POOL_PAGES {
                    // Pages skipped for alignment stay available as single pages.
                    self.free.splice(0..0, (self.high..aligned).map(|p| p as u32));
                }
                aligned
            }
        };
        if i + n > POOL_PAGES {
            self.alloc_failed = true;
            self.event(Event::AllocFail { order: order as u8, injected: false });
            return None;
        }
        let dirty = if self.non_coherent { u64::MAX } else { 0 };
        for j in 0..n {
            if self.pages[i + j].dirty_content {
                self.machine.fill_page(self.layout.pool_page(i + j), 0);
            }
            self.pages[i + j] = Page {
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
        }
        self.high = self.high.max(i + n);
        let pa = self.layout.pool_page(i);
        self.event(Event::Alloc { pa, order: order as u8 });
        Some(pa)
    }

    fn free_pages(&mut self, pa: Pa, order: u32) {
        for j in 0..1u64 << order {
            self.free_one(pa.add(j * PAGE_SIZE), (j == 0).then_some(order));
        }
        self.event(Event::Free { pa, order: order as u8 });
    }

    fn get_page(&mut self, pa: Pa) {
        if let Some(i) = self.used_page(pa, Use::Refcount) {
            self.pages[i].count += 1;
            self.touch(i);
            let count = self.pages[i].count;
            self.event(Event::Get { pa: pa.page(), count });
        }
    }

    fn put_page(&mut self, pa: Pa) {
        if let Some(i) = self.used_page(pa, Use::Refcount) {
            let count = self.pages[i].count.saturating_sub(1);
            self.pages[i].count = count;
            self.touch(i);
            self.event(Event::Put { pa: pa.page(), count });
            if count == 0 {
                // As in Linux: the last reference frees the page.
                self.free_pages(pa.page(), 0);
            }
        }
    }

    fn page_count(&mut self, pa: Pa) -> u32 {
        self.used_page(pa, Use::Refcount).map_or(0, |i| self.pages[i].count)
    }

    #[inline]
    fn read_desc(&mut self, pa: Pa) -> Descriptor {
        match self.layout.pool_index(pa) {
            Some(i) => {
                if !self.pages[i].allocated {
                    self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Read });
                }
                Descriptor(self.machine.read_pool(i, (pa.page_offset() / 8) as usize, pa))
            }
            None => {
                // Never touch memory outside the pool: on hardware it may not exist.
                self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Stray });
                Descriptor(POISON)
            }
        }
    }

    fn write_desc(&mut self, pa: Pa, new: Descriptor) {
        let Some(i) = self.layout.pool_index(pa) else {
            return self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Stray });
        };
        let old = Descriptor(self.machine.read_pool(i, (pa.page_offset() / 8) as usize, pa));
        self.machine.write(pa, new.0);
        self.pages[i].dirty_content = true;
        self.event(Event::Write { pa, old, new });
        let page = self.pages[i];
        if !page.allocated {
            return self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Write });
        }
        if page.level == 0 {
            return self.malformed(pa, 0, new, Malformation::NotATable);
        }
        self.touch(i);
        let (level, vm) = (page.level, page.vm);
        let ipa = Ipa(page.ipa + (pa.page_offset() / 8) * level_size(level));
        let valid = i32::from(new.is_valid()) - i32::from(old.is_valid());
        self.pages[i].valid = (i32::from(page.valid) + valid) as u16;
        if self.non_coherent {
            let p = &mut self.pages[i];
            if p.dirty == 0 {
                p.dirty_since = self.op;
                self.dirty_pages.push(i as u32);
            }
            p.dirty |= 1 << (pa.page_offset() / LINE);
        }
        if old == new {
            return;
        }
        if level < LEAF_LEVEL && old.is_table(level) {
            if let Some(c) = self.layout.pool_index(old.output_address()) {
                if self.pages[c].parent == pa.0 {
                    self.pages[c].parent = 0;
                    self.pages[c].level = 0;
                }
            }
        }
        self.check_new(pa, level, vm, ipa, new);
        if old.is_valid() {
            self.pending.push(Pending { vm, level, op: self.op, ipa, old });
            if self.strict_bbm && new.is_valid() && old.output_address() != new.output_address() {
                self.violation(Detail::Bbm { at: pa, ipa, old, new });
            }
        }
        if level == LEAF_LEVEL {
            self.leaf_writes.push((vm, ipa));
        } else {
            self.table_changes.push((vm, ipa, level));
        }
    }

    fn clean_dcache(&mut self, pa: Pa, len: u64) {
        self.machine.clean(pa, len);
        self.event(Event::Clean { pa, len: len as u32 });
        if !self.non_coherent {
            return;
        }
        let mut line = pa.0 & !(LINE - 1);
        while line < pa.0 + len {
            if let Some(i) = self.layout.pool_index(Pa(line)) {
                self.pages[i].dirty &= !(1 << ((line & (PAGE_SIZE - 1)) / LINE));
            }
            line += LINE;
        }
    }

    fn tlb_flush_vmid(&mut self, vmid: Vmid) {
        self.machine.tlbi_vmid(vmid);
        self.event(Event::TlbiVmid { vmid });
        let vm_vmid = self.vm_vmid;
        self.pending.retain(|p| vm_vmid[p.vm as usize] != vmid);
    }

    fn tlb_flush_all(&mut self) {
        self.machine.tlbi_all();
        self.event(Event::TlbiAll);
        self.pending.clear();
        self.rollovers += 1;
    }

    fn dsb(&mut self) {
        self.machine.dsb();
    }

    fn warn(&mut self, warning: Warning) {
        self.event(Event::Warn { warning });
        self.violation(Detail::Warn { warning });
    }
}
