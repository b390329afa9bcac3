//! `mmu::Platform` over the harness's [`Services`]: the only place the two sets of types
//! meet. Boring on purpose: every call is passed on as it is.

use harness_core::arch::tlb::Tlbi;
use harness_core::arch::{Desc, Pa, Vmid};
use harness_core::event::Warning;
use harness_core::target::Services;

/// The harness's services, as `mmu` wants to see them.
pub struct On<'s, S: Services>(pub &'s mut S);

fn pa(p: mmu::Pa) -> Pa {
    Pa(p.0)
}

impl<S: Services> mmu::Platform for On<'_, S> {
    fn alloc_pages(&mut self, order: u32) -> Option<mmu::Pa> {
        self.0.alloc_pages(order).map(|p| mmu::Pa(p.0))
    }
    fn free_pages(&mut self, p: mmu::Pa, order: u32) {
        self.0.free_pages(pa(p), order);
    }
    fn get_page(&mut self, p: mmu::Pa) {
        self.0.get_page(pa(p));
    }
    fn put_page(&mut self, p: mmu::Pa) {
        self.0.put_page(pa(p));
    }
    fn page_count(&mut self, p: mmu::Pa) -> u32 {
        self.0.page_count(pa(p))
    }
    fn read_desc(&mut self, p: mmu::Pa) -> mmu::Descriptor {
        mmu::Descriptor(self.0.read_desc(pa(p)).0)
    }
    fn write_desc(&mut self, p: mmu::Pa, desc: mmu::Descriptor) {
        self.0.write_desc(pa(p), Desc(desc.0));
    }
    fn clean_dcache(&mut self, p: mmu::Pa, len: u64) {
        self.0.clean_dcache(pa(p), len);
    }
    fn tlb_flush_vmid(&mut self, vmid: mmu::Vmid) {
        // `__kvm_tlb_flush_vmid`: TLBIALLIS under the VM's VTTBR, DSB, ISB.
        self.0.tlbi(Tlbi::Vmid(Vmid(vmid.0.into())));
    }
    fn tlb_flush_all(&mut self) {
        // `__kvm_flush_vm_context`: TLBIALLNSNHIS, DSB.
        self.0.tlbi(Tlbi::All);
    }
    fn dsb(&mut self) {
        self.0.dsb();
    }
    fn warn(&mut self, w: mmu::Warning) {
        self.0.warn(match w {
            mmu::Warning::TableCountAtFree { table, count } => {
                Warning::TableCountAtFree { table: pa(table), count }
            }
            mmu::Warning::RootCountAtFree { page, count } => {
                Warning::RootCountAtFree { page: pa(page), count }
            }
        });
    }
}
