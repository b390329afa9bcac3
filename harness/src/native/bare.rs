//! The baseline for measurements: a target on the smallest [`Services`] that work (flat
//! memory, refcounts, a bump-and-free-list allocator) with no oracle, no event and no model.
//! The ops go through the same adapter (`Target::call`) as in the executor; guest accesses
//! become one architectural walk, the least a hardware access costs.

use harness_core::arch::tlb::Tlbi;
use harness_core::arch::walk;
use harness_core::arch::{Desc, Ipa, Pa, PAGE_SIZE};
use harness_core::event::Warning;
use harness_core::layout::{Layout, POOL_PAGES};
use harness_core::op::{Config, Op, MAX_VMS};
use harness_core::target::{Services, Target};
use std::cell::Cell;
use std::ptr::NonNull;

/// Flat table memory and refcounts over the pool. Pages are zeroed lazily on first write,
/// as the simulator does, so the comparison measures the oracles and not memset. Memory is
/// cells, so a memory-owning target may write through the pointers it is given.
pub struct BareServices {
    layout: Layout,
    mem: Vec<Cell<u64>>,
    /// The page reads as zero until its first write.
    zero: Vec<bool>,
    count: Vec<u32>,
    free: Vec<u32>,
    next: usize,
}

impl BareServices {
    /// Services over the pool of `layout`.
    pub fn new(layout: Layout) -> Self {
        BareServices {
            layout,
            mem: vec![Cell::new(0); POOL_PAGES * 512],
            zero: vec![true; POOL_PAGES],
            count: vec![0; POOL_PAGES],
            free: Vec::new(),
            next: 0,
        }
    }

    fn reset(&mut self) {
        self.free.clear();
        self.next = 0;
        self.zero.fill(true);
    }

    fn page(&self, pa: Pa) -> usize {
        ((pa.0 - self.layout.pool_base().0) / PAGE_SIZE) as usize
    }

    fn word(&self, pa: Pa) -> usize {
        ((pa.0 - self.layout.pool_base().0) / 8) as usize
    }

    fn materialise(&mut self, p: usize) {
        if self.zero[p] {
            for c in &self.mem[p * 512..(p + 1) * 512] {
                c.set(0);
            }
            self.zero[p] = false;
        }
    }

    /// Reads a word of table memory (zero outside the pool).
    pub fn read(&self, pa: Pa) -> u64 {
        match self.layout.pool_index(pa) {
            Some(p) if !self.zero[p] => self.mem[self.word(pa)].get(),
            _ => 0,
        }
    }
}

impl Services for BareServices {
    fn layout(&self) -> Layout {
        self.layout
    }
    fn new_root(&mut self, _: Pa) {}
    fn alloc_pages(&mut self, order: u32) -> Option<Pa> {
        let n = 1usize << order;
        let i = match (order, self.free.pop()) {
            (0, Some(i)) => i as usize,
            (_, popped) => {
                if let Some(i) = popped {
                    self.free.push(i);
                }
                let i = self.next.next_multiple_of(n);
                if i + n > POOL_PAGES {
                    return None;
                }
                self.next = i + n;
                i
            }
        };
        self.zero[i..i + n].fill(true);
        self.count[i] = 1;
        self.count[i + 1..i + n].fill(0);
        Some(self.layout.pool_page(i))
    }
    fn free_pages(&mut self, pa: Pa, order: u32) {
        let i = self.page(pa);
        self.free.extend((i..i + (1 << order)).map(|p| p as u32));
    }
    fn get_page(&mut self, pa: Pa) {
        let i = self.page(pa);
        self.count[i] += 1;
    }
    fn put_page(&mut self, pa: Pa) {
        let i = self.page(pa);
        self.count[i] -= 1;
        if self.count[i] == 0 {
            self.free.push(i as u32);
        }
    }
    fn page_count(&mut self, pa: Pa) -> u32 {
        self.count[self.page(pa)]
    }
    fn read_desc(&mut self, pa: Pa) -> Desc {
        Desc(self.read(pa))
    }
    fn write_desc(&mut self, pa: Pa, desc: Desc) {
        let (p, w) = (self.page(pa), self.word(pa));
        self.materialise(p);
        self.mem[w].set(desc.0);
    }
    fn clean_dcache(&mut self, _: Pa, _: u64) {}
    fn tlbi(&mut self, _: Tlbi) {}
    fn dsb(&mut self) {}
    fn warn(&mut self, _: Warning) {}
    fn table_memory(&mut self, pa: Pa) -> Option<NonNull<u64>> {
        let p = self.layout.pool_index(pa)?;
        self.materialise(p);
        NonNull::new(self.mem[p * 512].as_ptr())
    }
}

/// Runs ops straight on a target, keeping nothing but which VMs exist. Reuses its memory
/// across runs.
pub struct BareRunner<T: Target> {
    s: BareServices,
    target: T,
    live: [bool; MAX_VMS],
}

impl<T: Target + Default> BareRunner<T> {
    /// A runner for `config`.
    pub fn new(config: &Config) -> Self {
        BareRunner { s: BareServices::new(config.layout), target: T::default(), live: [false; MAX_VMS] }
    }

    /// Runs a sequence from a fresh state; returns how many ops reached the target.
    pub fn run(&mut self, config: &Config, ops: &[Op]) -> usize {
        self.s.reset();
        self.target.reset(config);
        self.live = [false; MAX_VMS];
        let info = self.target.info();
        let mut done = 0;
        for op in ops {
            if !info.offers(op) {
                continue;
            }
            let vm = op.vm().map(usize::from);
            match (*op, vm) {
                (Op::FailAlloc { .. }, _) => continue,
                (_, Some(v)) if v >= MAX_VMS => continue,
                (Op::CreateVm { .. }, Some(v)) if self.live[v] => continue,
                (Op::CreateVm { .. }, _) => {}
                (_, Some(v)) if !self.live[v] => continue,
                _ => {}
            }
            done += 1;
            let r = match *op {
                Op::Read { vm, ipa } | Op::Write { vm, ipa, .. } => {
                    let root = self.target.root(vm).unwrap_or(Pa(0));
                    let s = &self.s;
                    let page = Ipa(ipa & !(PAGE_SIZE - 1));
                    let _ = walk::translate(&info.geometry, &mut |a| s.read(a), root, page);
                    Ok(())
                }
                _ => self.target.call(&mut self.s, op),
            };
            match *op {
                Op::CreateVm { vm } => self.live[vm as usize] = r.is_ok(),
                Op::DestroyVm { vm } => self.live[vm as usize] = false,
                _ => {}
            }
        }
        done
    }
}
