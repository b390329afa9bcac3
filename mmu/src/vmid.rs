//! VMID allocation with generations (`update_vttbr`), and the last check before guest entry.
//!
//! VMIDs are handed out in order from 1; VMID 0 is never used for a guest. When the space is
//! exhausted the generation is bumped, every guest TLB entry is invalidated, and VMs take
//! fresh VMIDs as they next run. A VM whose generation is not the current one has no VMID.

use crate::addr::{Vmid, Vttbr};
use crate::defects::Defects;
use crate::error::Error;
use crate::kvm::Kvm;
use crate::platform::Platform;

/// The global allocator (`kvm_vmid_gen`, `kvm_next_vmid`, `kvm_vmid_bits`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmidAllocator {
    generation: u64,
    next: u16,
    bits: u8,
}

impl VmidAllocator {
    /// An allocator for VMIDs of `bits` bits (1 to 8). The first generation is 1.
    pub fn new(bits: u8) -> Result<Self, Error> {
        if !(1..=8).contains(&bits) {
            return Err(Error::OutOfRange);
        }
        Ok(VmidAllocator { generation: 1, next: 1, bits })
    }
    /// The current generation.
    pub const fn generation(&self) -> u64 {
        self.generation
    }
    /// The VMID width.
    pub const fn bits(&self) -> u8 {
        self.bits
    }
}

/// A VM's VMID, the generation it belongs to, and the VTTBR built from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VmidState {
    /// Generation of the VMID; 0 until the VM first runs.
    pub generation: u64,
    /// The VMID.
    pub vmid: Vmid,
    /// Root | VMID << 48.
    pub vttbr: Vttbr,
}

impl Kvm {
    /// `need_new_vmid_gen`: the VM's VMID is not of the current generation.
    pub fn need_new_vmid_gen(&self, alloc: &VmidAllocator) -> bool {
        self.vmid.generation != alloc.generation
    }

    /// `update_vttbr`: gives the VM a VMID of the current generation if it lacks one,
    /// rolling the generation over (and flushing every guest TLB entry) when none is left.
    pub fn update_vttbr<P: Platform>(
        &mut self,
        alloc: &mut VmidAllocator,
        p: &mut P,
    ) -> Result<Vttbr, Error> {
        let root = self.root.ok_or(Error::NoRoot)?;
        if !self.need_new_vmid_gen(alloc) {
            return Ok(self.vmid.vttbr);
        }
        // Xen before 8e2acc2074ce took the VMID from a counter that simply wrapped, VMID 0
        // included, so VMIDs of live VMs were handed out again.
        if alloc.next == 0 && !self.defects.contains(Defects::VMID_WRAP_ALIAS) {
            alloc.generation += 1;
            alloc.next = 1;
            // Xen before 80ede1ac29b9 reused a VMID without invalidating its TLB entries.
            if !self.defects.contains(Defects::VMID_REUSE_NO_FLUSH) {
                p.tlb_flush_all();
            }
        }
        let vmid = Vmid(alloc.next as u8);
        alloc.next = (alloc.next + 1) & ((1u16 << alloc.bits) - 1);
        assert!(root.0 & !Vttbr::BADDR_MASK == 0, "BUG: stage-2 root {root} is not 8 KiB aligned for VTTBR");
        self.vmid = VmidState { generation: alloc.generation, vmid, vttbr: Vttbr::new(root, vmid) };
        Ok(self.vmid.vttbr)
    }

    /// The last steps of `kvm_arch_vcpu_ioctl_run` before the world switch: a vCPU that never
    /// ran takes its first VMID (the run loop's `update_vttbr`); then, with interrupts off,
    /// later kernels re-check the generation and take a new VMID if a rollover happened
    /// since `update_vttbr`. Returns the VTTBR the guest runs with.
    pub fn vcpu_enter<P: Platform>(&mut self, alloc: &mut VmidAllocator, p: &mut P) -> Result<Vttbr, Error> {
        let root = self.root.ok_or(Error::NoRoot)?;
        if self.vmid.generation == 0 {
            if self.defects.contains(Defects::VMID_UNALLOCATED_ENTRY) {
                // Linux before fa808ed4e199: VTTBR was programmed at vcpu_load from a VMID
                // not yet allocated, and the vCPU entered without reloading it.
                self.vmid.vttbr = Vttbr::new(root, Vmid(0));
                return Ok(self.vmid.vttbr);
            }
            // The run loop's update_vttbr: a vCPU that never ran takes its first VMID.
            self.update_vttbr(alloc, p)?;
        }
        if !self.defects.contains(Defects::VMID_STALE_CHECK) {
            while self.need_new_vmid_gen(alloc) {
                self.update_vttbr(alloc, p)?;
            }
        }
        Ok(self.vmid.vttbr)
    }
}
