//! VMID allocation: generations, rollover at several widths, and the check before entry.

mod common;

use common::TestPlatform;
use mmu::{Defects, Kvm, Vmid, VmidAllocator};

fn vms(n: usize, defects: Defects, p: &mut TestPlatform) -> Vec<Kvm> {
    (0..n)
        .map(|_| {
            let mut k = Kvm::new(defects);
            k.alloc_stage2_pgd(p).unwrap();
            k
        })
        .collect()
}

/// With `bits` bits, 2^bits - 1 VMs get distinct VMIDs 1.. in generation 1; the next update
/// rolls over: generation 2, one flush of everything, and VMIDs restart at 1.
fn rollover_at_width(bits: u8) {
    let mut p = TestPlatform::new();
    let mut alloc = VmidAllocator::new(bits).unwrap();
    let usable = (1usize << bits) - 1;
    let mut vm = vms(usable + 1, Defects::NONE, &mut p);
    for (i, k) in vm.iter_mut().take(usable).enumerate() {
        assert!(k.need_new_vmid_gen(&alloc));
        let vttbr = k.update_vttbr(&mut alloc, &mut p).unwrap();
        assert_eq!(vttbr.vmid(), Vmid(i as u8 + 1));
        assert_eq!(vttbr.root(), k.root().unwrap());
        assert_eq!(k.vmid_state().generation, 1);
    }
    assert_eq!(p.flush_alls(), 0);
    // Updating again within the generation keeps the VMID.
    assert_eq!(vm[0].update_vttbr(&mut alloc, &mut p).unwrap().vmid(), Vmid(1));
    let last = vm[usable].update_vttbr(&mut alloc, &mut p).unwrap();
    assert_eq!(alloc.generation(), 2);
    assert_eq!(p.flush_alls(), 1);
    assert_eq!(last.vmid(), Vmid(1));
    assert!(vm[0].need_new_vmid_gen(&alloc), "old generation VMIDs are gone");
    assert_eq!(vm[0].update_vttbr(&mut alloc, &mut p).unwrap().vmid(), Vmid(if bits == 1 { 1 } else { 2 }));
    assert_eq!(p.flush_alls(), if bits == 1 { 2 } else { 1 });
}

#[test]
fn vmid_rollover_width_1() {
    rollover_at_width(1);
}

#[test]
fn vmid_rollover_width_2() {
    rollover_at_width(2);
}

#[test]
fn vmid_rollover_width_8() {
    rollover_at_width(8);
}

#[test]
fn vmid_width_must_be_1_to_8() {
    assert!(VmidAllocator::new(0).is_err());
    assert!(VmidAllocator::new(9).is_err());
    assert_eq!(VmidAllocator::new(8).unwrap().bits(), 8);
}

#[test]
fn vmid_zero_is_never_handed_out() {
    // Four VMs round-robin over the three VMIDs of width 2: each VM has always lost its VMID
    // by its next turn, so every update allocates and every third one after the first three
    // rolls over (updates 4, 7, ..., 40: 13 rollovers).
    let mut p = TestPlatform::new();
    let mut alloc = VmidAllocator::new(2).unwrap();
    let mut vm = vms(4, Defects::NONE, &mut p);
    for round in 0..40 {
        let v = vm[round % 4].update_vttbr(&mut alloc, &mut p).unwrap();
        assert_ne!(v.vmid(), Vmid(0), "round {round}");
    }
    assert_eq!(alloc.generation(), 14);
    assert_eq!(p.flush_alls(), 13);
}

#[test]
fn entry_rechecks_the_generation() {
    let mut p = TestPlatform::new();
    let mut alloc = VmidAllocator::new(1).unwrap();
    let mut vm = vms(2, Defects::NONE, &mut p);
    let a = vm[0].update_vttbr(&mut alloc, &mut p).unwrap();
    vm[1].update_vttbr(&mut alloc, &mut p).unwrap(); // rolls over, takes VMID 1
    let entered = vm[0].vcpu_enter(&mut alloc, &mut p).unwrap();
    assert_eq!(vm[0].vmid_state().generation, alloc.generation());
    assert_eq!(alloc.generation(), 3, "A's re-check rolled over again");
    assert_eq!(entered.vmid(), a.vmid());
    assert!(vm[1].need_new_vmid_gen(&alloc));
}

#[test]
fn entry_without_the_recheck_uses_the_stale_vmid() {
    let mut p = TestPlatform::new();
    let mut alloc = VmidAllocator::new(1).unwrap();
    let mut vm = vms(2, Defects::VMID_STALE_CHECK, &mut p);
    let a = vm[0].update_vttbr(&mut alloc, &mut p).unwrap();
    let b = vm[1].update_vttbr(&mut alloc, &mut p).unwrap();
    let entered = vm[0].vcpu_enter(&mut alloc, &mut p).unwrap();
    assert_eq!(entered, a);
    assert_eq!(entered.vmid(), b.vmid(), "both VMs run with VMID 1");
    assert_ne!(vm[0].vmid_state().generation, alloc.generation());
}
