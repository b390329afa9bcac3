//! Target `kvm-arm-2012`: `mmu`, the Rust port of the 2012 KVM/ARM stage-2 code, the
//! reference target. One op, one call into `mmu`; everything it does to memory goes through
//! [`platform::On`] to the harness, which watches.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod platform;

use alloc::vec::Vec;

use harness_core::arch::{Geometry, Pa, Vttbr};
use harness_core::layout::STUB_IPA;
use harness_core::op::{Config, Op, OpSet, MAX_VMS};
use harness_core::result::Errno;
use harness_core::target::{Observe, Services, Target, TargetInfo};
use mmu::{Defects, Hva, Ipa, Kvm, Memslot, VmidAllocator};
use platform::On;

const SWITCHES: usize = Defects::ALL.len();

/// `mmu`'s defect switches as (name, one line), in bit order.
const DEFECTS: [(&str, &str); SWITCHES] = {
    let mut t = [("", ""); SWITCHES];
    let mut i = 0;
    while i < SWITCHES {
        t[i] = (Defects::ALL[i].1, Defects::ALL[i].2);
        i += 1;
    }
    t
};

/// What this target is and offers.
pub static INFO: TargetInfo = TargetInfo {
    name: "kvm-arm-2012",
    summary: "mmu: Rust port of the 2012 KVM/ARM stage-2 code (arch/arm/kvm/mmu.c), with the seed's defects as switches",
    geometry: Geometry::ARMV7_40BIT,
    ops: OpSet::of(&[
        "create_vm",
        "destroy_vm",
        "add_memslot",
        "remove_memslot",
        "topup",
        "map",
        "clear",
        "ioremap",
        "unmap_hva",
        "unmap_hva_range",
        "set_spte_hva",
        "update_vmid",
        "enter",
        "read",
        "write",
        "fail_alloc",
    ]),
    defects: &DEFECTS,
    workarounds: &[],
    coherent_walker_only: false,
    observe: Observe::Instrumented,
    prepares_tables: false,
    refcounted: true,
    frees_empty_tables: true,
    blocks: false,
    attrs: harness_core::arch::MemAttrs::LINUX,
    vmid_bits: (1, 8),
    barriers_observed: true,
    tlbi_completes: true,
};

/// The adapter: the VMs and the global VMID allocator.
pub struct KvmArm2012 {
    vms: [Option<Kvm>; MAX_VMS],
    vmids: VmidAllocator,
    defects: Defects,
}

impl Default for KvmArm2012 {
    fn default() -> Self {
        KvmArm2012 {
            vms: Default::default(),
            vmids: VmidAllocator::new(8).expect("8 bits is a valid width"),
            defects: Defects::NONE,
        }
    }
}

fn errno(e: mmu::Error) -> Errno {
    match e {
        mmu::Error::NoMemory => Errno::NoMemory,
        mmu::Error::Fault => Errno::Fault,
        mmu::Error::AlreadyInitialized => Errno::AlreadyInitialized,
        mmu::Error::NoRoot => Errno::NoRoot,
        mmu::Error::Misaligned => Errno::Misaligned,
        mmu::Error::OutOfRange => Errno::OutOfRange,
        mmu::Error::BadCacheRequest => Errno::BadCacheRequest,
        mmu::Error::UnknownMemslot => Errno::UnknownMemslot,
        mmu::Error::MemslotOverlap => Errno::MemslotOverlap,
        mmu::Error::NoMemslotSpace => Errno::NoMemslotSpace,
    }
}

impl Target for KvmArm2012 {
    fn info(&self) -> &'static TargetInfo {
        &INFO
    }

    fn reset(&mut self, config: &Config) {
        self.vms = Default::default();
        self.defects = Defects::from_bits_truncate(config.defects.0);
        let bits = config.vmid_bits.clamp(1, 8);
        self.vmids = VmidAllocator::new(bits).expect("clamped to 1..=8");
    }

    fn call<S: Services>(&mut self, s: &mut S, op: &Op) -> Result<(), Errno> {
        let stub = mmu::Pa(s.layout().stub_frame().0);
        let p = &mut On(s);
        let vm = op.vm().unwrap_or(0) as usize;
        if let Op::CreateVm { .. } = *op {
            // kvm_arch_init_vm: the root, then the guest stub page through the fault path.
            let mut kvm = Kvm::new(self.defects);
            kvm.alloc_stage2_pgd(p).map_err(errno)?;
            let root = kvm.root().expect("just allocated");
            p.0.new_root(Pa(root.0));
            if let Err(e) = kvm.map_guest_page(p, Ipa(STUB_IPA.0), stub, false) {
                kvm.free_memory_caches(p);
                kvm.free_stage2_pgd(p);
                return Err(errno(e));
            }
            self.vms[vm] = Some(kvm);
            return Ok(());
        }
        let kvm = self.vms[vm].as_mut().expect("the executor only calls live VMs");
        let r = match *op {
            Op::DestroyVm { .. } => {
                kvm.free_memory_caches(p);
                kvm.free_stage2_pgd(p);
                self.vms[vm] = None;
                Ok(())
            }
            Op::AddMemslot { slot, gpa, pages, hva, .. } => {
                Memslot::new(slot, Ipa(gpa), pages, Hva(hva)).and_then(|m| kvm.add_memslot(m))
            }
            Op::RemoveMemslot { slot, .. } => kvm.remove_memslot(p, slot).map(|_| ()),
            Op::Topup { min, max, .. } => kvm.topup(p, min.into(), max.into()),
            Op::Map { ipa, pa, writable, .. } => kvm.map_guest_page(p, Ipa(ipa), mmu::Pa(pa), writable),
            Op::Clear { ipa, .. } => kvm.stage2_clear_pte(p, Ipa(ipa)).map(|_| ()),
            Op::Ioremap { ipa, pa, size, .. } => kvm.phys_addr_ioremap(p, Ipa(ipa), mmu::Pa(pa), size),
            Op::UnmapHva { hva, .. } => kvm.unmap_hva(p, Hva(hva)),
            Op::UnmapHvaRange { start, end, .. } => kvm.unmap_hva_range(p, Hva(start), Hva(end)),
            Op::SetSpteHva { hva, pa, .. } => kvm.set_spte_hva(p, Hva(hva), mmu::Pa(pa)),
            Op::UpdateVmid { .. } => kvm.update_vttbr(&mut self.vmids, p).map(|_| ()),
            // A vCPU that never ran gets its first VMID on the way in (kvm_arch_vcpu_ioctl_run
            // calls update_vttbr before the last check); vcpu_enter does both.
            Op::Enter { .. } => kvm.vcpu_enter(&mut self.vmids, p).map(|_| ()),
            // Guest accesses and fault injection are the harness's; the rest is not offered.
            _ => Ok(()),
        };
        r.map_err(errno)
    }

    fn root(&self, vm: u8) -> Option<Pa> {
        self.vms.get(vm as usize)?.as_ref()?.root().map(|r| Pa(r.0))
    }

    fn vttbr(&self, vm: u8) -> Vttbr {
        self.vms.get(vm as usize).and_then(Option::as_ref).map_or(Vttbr(0), |k| Vttbr(k.vttbr().0))
    }

    fn vmid_generation(&self, vm: u8) -> u64 {
        self.vms.get(vm as usize).and_then(Option::as_ref).map_or(0, |k| k.vmid_state().generation)
    }

    fn memslots(&self, vm: u8, out: &mut Vec<(u16, u64, u64, u64)>) {
        if let Some(k) = self.vms.get(vm as usize).and_then(Option::as_ref) {
            out.extend(k.memslots().iter().map(|m| (m.id, m.gpa_start(), m.npages, m.userspace_addr.0)));
        }
    }

    fn cache_len(&self, vm: u8) -> usize {
        self.vms.get(vm as usize).and_then(Option::as_ref).map_or(0, |k| k.cache().len())
    }

    fn cache(&self, vm: u8, out: &mut Vec<Pa>) {
        if let Some(k) = self.vms.get(vm as usize).and_then(Option::as_ref) {
            out.extend(k.cache().pages().iter().map(|p| Pa(p.0)));
        }
    }
}
