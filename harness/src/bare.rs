//! The baseline for measurements: `mmu` on the smallest platform that works (flat memory,
//! refcounts, a bump-and-free-list allocator) with no oracle, no event and no model. The
//! same ops as the executor, dispatched straight to `mmu`; guest accesses become one
//! architectural walk, the least a hardware access costs.

use harness_core::layout::{Layout, POOL_PAGES, STUB_IPA};
use harness_core::op::{Config, Op, MAX_VMS};
use harness_core::walker;
use mmu::addr::PAGE_SIZE;
use mmu::{Descriptor, Hva, Ipa, Kvm, Memslot, Pa, Platform, Vmid, VmidAllocator, Warning};

/// Flat table memory and refcounts over the pool. Pages are zeroed lazily on first write,
/// as the simulator does, so the comparison measures the oracles and not memset.
pub struct BarePlatform {
    layout: Layout,
    mem: Vec<u64>,
    /// The page reads as zero until its first write.
    zero: Vec<bool>,
    count: Vec<u32>,
    free: Vec<u32>,
    next: usize,
}

impl BarePlatform {
    /// A platform over the pool of `layout`.
    pub fn new(layout: Layout) -> Self {
        BarePlatform {
            layout,
            mem: vec![0; POOL_PAGES * 512],
            zero: vec![true; POOL_PAGES],
            count: vec![0; POOL_PAGES],
            free: Vec::new(),
            next: 0,
        }
    }

    fn reset(&mut self) {
        self.free.clear();
        self.next = 0;
    }

    fn word(&self, pa: Pa) -> usize {
        ((pa.0 - self.layout.pool_base().0) / 8) as usize
    }

    fn page(&self, pa: Pa) -> usize {
        ((pa.0 - self.layout.pool_base().0) / PAGE_SIZE) as usize
    }
}

impl Platform for BarePlatform {
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
    fn read_desc(&mut self, pa: Pa) -> Descriptor {
        if self.zero[self.page(pa)] {
            return Descriptor(0);
        }
        Descriptor(self.mem[self.word(pa)])
    }
    fn write_desc(&mut self, pa: Pa, desc: Descriptor) {
        let (p, w) = (self.page(pa), self.word(pa));
        if self.zero[p] {
            self.mem[p * 512..(p + 1) * 512].fill(0);
            self.zero[p] = false;
        }
        self.mem[w] = desc.0;
    }
    fn clean_dcache(&mut self, _: Pa, _: u64) {}
    fn tlb_flush_vmid(&mut self, _: Vmid) {}
    fn tlb_flush_all(&mut self) {}
    fn dsb(&mut self) {}
    fn warn(&mut self, _: Warning) {}
}

/// Runs ops straight on `mmu`, keeping nothing but the VMs. Reuses `p` across runs.
pub struct BareRunner {
    p: BarePlatform,
    vms: [Option<Kvm>; MAX_VMS],
    vmids: VmidAllocator,
}

impl BareRunner {
    /// A runner for `config`.
    pub fn new(config: &Config) -> Self {
        let vmids = VmidAllocator::new(config.vmid_bits)
            .unwrap_or_else(|_| VmidAllocator::new(8).expect("8 is valid"));
        BareRunner { p: BarePlatform::new(config.layout), vms: Default::default(), vmids }
    }

    /// Runs a sequence from a fresh state; returns how many ops reached `mmu`.
    pub fn run(&mut self, config: &Config, ops: &[Op]) -> usize {
        self.p.reset();
        self.vms = Default::default();
        self.vmids = VmidAllocator::new(config.vmid_bits)
            .unwrap_or_else(|_| VmidAllocator::new(8).expect("8 is valid"));
        let stub = config.layout.stub_frame();
        let mut done = 0;
        for op in ops {
            let p = &mut self.p;
            if let Op::CreateVm { vm } = *op {
                if (vm as usize) < MAX_VMS && self.vms[vm as usize].is_none() {
                    let mut k = Kvm::new(config.defects);
                    if k.alloc_stage2_pgd(p).is_ok() && k.map_guest_page(p, STUB_IPA, stub, false).is_ok() {
                        self.vms[vm as usize] = Some(k);
                    }
                    done += 1;
                }
                continue;
            }
            let Some(Some(k)) = op.vm().map(|vm| self.vms.get_mut(vm as usize).and_then(Option::as_mut))
            else {
                continue;
            };
            done += 1;
            let _ = match *op {
                Op::DestroyVm { vm } => {
                    k.free_memory_caches(p);
                    k.free_stage2_pgd(p);
                    self.vms[vm as usize] = None;
                    Ok(())
                }
                Op::AddMemslot { slot, gpa, pages, hva, .. } => {
                    Memslot::new(slot, Ipa(gpa), pages, Hva(hva)).and_then(|s| k.add_memslot(s))
                }
                Op::RemoveMemslot { slot, .. } => k.remove_memslot(slot).map(|_| ()),
                Op::Topup { min, max, .. } => k.topup(p, min.into(), max.into()),
                Op::Map { ipa, pa, writable, .. } => k.map_guest_page(p, Ipa(ipa), Pa(pa), writable),
                Op::Clear { ipa, .. } => k.stage2_clear_pte(p, Ipa(ipa)).map(|_| ()),
                Op::Ioremap { ipa, pa, size, .. } => k.phys_addr_ioremap(p, Ipa(ipa), Pa(pa), size),
                Op::UnmapHva { hva, .. } => k.unmap_hva(p, Hva(hva)),
                Op::UnmapHvaRange { start, end, .. } => k.unmap_hva_range(p, Hva(start), Hva(end)),
                Op::SetSpteHva { hva, pa, .. } => k.set_spte_hva(p, Hva(hva), Pa(pa)),
                Op::UpdateVmid { .. } => k.update_vttbr(&mut self.vmids, p).map(|_| ()),
                Op::Enter { .. } => k.vcpu_enter(&mut self.vmids, p).map(|_| ()),
                Op::Read { ipa, .. } | Op::Write { ipa, .. } => {
                    let root = k.root().unwrap_or(Pa(0));
                    let _ = walker::translate(&mut |a| p.read_desc(a).0, root, Ipa(ipa & !(PAGE_SIZE - 1)));
                    Ok(())
                }
                Op::CreateVm { .. } | Op::FailAlloc { .. } => Ok(()),
            };
        }
        done
    }
}
