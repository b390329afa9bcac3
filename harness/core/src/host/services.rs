//! The [`Services`] a target gets: the page pool, table memory, references and maintenance,
//! each an event and each checked.

use super::Host;
use crate::arch::tlb::Tlbi;
use crate::arch::{Desc, Pa, PAGE_SIZE};
use crate::event::{Event, Warning};
use crate::feedback::{bucket, Family};
use crate::layout::{Layout, POISON};
use crate::machine::Machine;
use crate::oracle::cache;
use crate::pool::{AllocFail, Page};
use crate::target::{Observe, Services};
use crate::violation::{Detail, Use};
use alloc::boxed::Box;
use core::ptr::NonNull;

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
        // The hot path alone, small enough to inline into the target's walks (a VM's
        // teardown reads every root entry); a read outside the allocated pool is cold.
        match self.layout.pool_index(pa) {
            Some(i) if self.pool.pages[i].allocated => {
                Desc(self.machine.read_pool(i, (pa.page_offset() / 8) as usize, pa))
            }
            _ => self.read_desc_cold(pa),
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
        self.invalidated(op, false);
    }

    fn tlbi_executed(&mut self, op: Tlbi) {
        self.invalidated(op, true);
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

impl<M: Machine> Host<M> {
    /// A descriptor read from a freed page or from outside the pool: a violation.
    #[cold]
    #[inline(never)]
    fn read_desc_cold(&mut self, pa: Pa) -> Desc {
        match self.layout.pool_index(pa) {
            Some(i) => {
                self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Read });
                Desc(self.machine.read_pool(i, (pa.page_offset() / 8) as usize, pa))
            }
            None => {
                // Never touch memory outside the pool: on hardware it may not exist.
                self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Stray });
                Desc(POISON)
            }
        }
    }

    /// A TLB invalidation: performed on the machine unless the target's code `executed` it
    /// already, recorded, and judged.
    fn invalidated(&mut self, op: Tlbi, executed: bool) {
        match op {
            Tlbi::Ipas2 { vmid, ipa } => self.sync_path(vmid, ipa),
            Tlbi::Vmalle1(vmid) | Tlbi::Vmalls12e1(vmid) | Tlbi::Vmid(vmid) => self.sync_vmid(vmid),
            Tlbi::All => self.sync(),
        }
        if executed {
            self.machine.tlbi_executed(op);
        } else {
            self.machine.tlbi(op);
        }
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
            Tlbi::All if self.generations => self.vmids.rollover(),
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
}
