//! Each seed defect, switched on, brings back the seed's behaviour on its trigger; switched
//! off, the same trigger behaves as later kernels do.

mod common;

use common::{Ev, TestPlatform};
use mmu::{Defects, Descriptor, Error, Hva, Ipa, Kvm, Memslot, Pa, S2Attrs, Vmid, VmidAllocator, Warning};

const A: u64 = 0x20_0000;
const FRAME: Pa = Pa(0x4400_0000);

fn vm(defects: Defects) -> (Kvm, TestPlatform) {
    let mut p = TestPlatform::new();
    let mut kvm = Kvm::new(defects);
    kvm.alloc_stage2_pgd(&mut p).unwrap();
    (kvm, p)
}

fn map(kvm: &mut Kvm, p: &mut TestPlatform, ipa: u64, pa: Pa) {
    kvm.map_guest_page(p, Ipa(ipa), pa, true).unwrap();
}

fn lookup(kvm: &Kvm, p: &TestPlatform, ipa: u64) -> Result<Descriptor, u8> {
    p.translate(kvm.root().unwrap(), ipa)
}

#[test]
fn clear_nonpresent() {
    for (defects, a_survives) in [(Defects::NONE, true), (Defects::CLEAR_NONPRESENT, false)] {
        let (mut kvm, mut p) = vm(defects);
        map(&mut kvm, &mut p, A, FRAME);
        kvm.stage2_clear_pte(&mut p, Ipa(A + 0x1000)).unwrap();
        assert_eq!(lookup(&kvm, &p, A).is_ok(), a_survives, "{defects}");
    }
}

#[test]
fn free_before_flush() {
    for (defects, flush_first) in [(Defects::NONE, true), (Defects::FREE_BEFORE_FLUSH, false)] {
        let (mut kvm, mut p) = vm(defects);
        map(&mut kvm, &mut p, A, FRAME);
        kvm.free_memory_caches(&mut p);
        p.log.clear();
        kvm.stage2_clear_pte(&mut p, Ipa(A)).unwrap();
        let flush = p.log.iter().position(|e| matches!(e, Ev::Flush(_))).unwrap();
        let free = p.log.iter().position(|e| matches!(e, Ev::Free(..))).unwrap();
        assert_eq!(flush < free, flush_first, "{defects}: {:?}", p.log);
    }
}

#[test]
fn ioremap_overwrite() {
    for (defects, expect) in [(Defects::NONE, Err(Error::Fault)), (Defects::IOREMAP_OVERWRITE, Ok(()))] {
        let (mut kvm, mut p) = vm(defects);
        map(&mut kvm, &mut p, A, FRAME);
        assert_eq!(kvm.phys_addr_ioremap(&mut p, Ipa(A), Pa(0x4600_0000), 0x1000), expect);
        let mem = lookup(&kvm, &p, A).unwrap().attrs().unwrap().mem;
        assert_eq!(mem == mmu::MemType::Device, expect.is_ok(), "{defects}");
    }
}

#[test]
fn ioremap_overwrite_replaces_in_place_then_flushes() {
    let (mut kvm, mut p) = vm(Defects::IOREMAP_OVERWRITE);
    map(&mut kvm, &mut p, A, FRAME);
    p.log.clear();
    kvm.phys_addr_ioremap(&mut p, Ipa(A), Pa(0x4600_0000), 0x1000).unwrap();
    let seen: Vec<_> = p.log.iter().filter(|e| matches!(e, Ev::Write(..) | Ev::Flush(_))).cloned().collect();
    let device = Descriptor::page(Pa(0x4600_0000), S2Attrs::DEVICE_RW).0;
    assert!(matches!(seen.as_slice(), [Ev::Write(_, _, n), Ev::Flush(0)] if *n == device), "{seen:?}");
}

#[test]
fn memslot_keep_mappings() {
    for (defects, kept) in [(Defects::NONE, false), (Defects::MEMSLOT_KEEP_MAPPINGS, true)] {
        let (mut kvm, mut p) = vm(defects);
        kvm.add_memslot(Memslot { id: 0, base_gfn: A >> 12, npages: 16, userspace_addr: Hva(0x8000_0000) })
            .unwrap();
        map(&mut kvm, &mut p, A + 0x3000, FRAME);
        kvm.remove_memslot(&mut p, 0).unwrap();
        assert_eq!(lookup(&kvm, &p, A + 0x3000).is_ok(), kept, "{defects}");
    }
}

#[test]
fn set_pte_no_barrier() {
    for (defects, barrier) in [(Defects::NONE, true), (Defects::SET_PTE_NO_BARRIER, false)] {
        let (mut kvm, mut p) = vm(defects);
        map(&mut kvm, &mut p, A, FRAME);
        p.log.clear();
        map(&mut kvm, &mut p, A, FRAME.add(0x1000));
        let flush = p.log.iter().position(|e| matches!(e, Ev::Flush(_))).unwrap();
        let before = &p.log[..flush];
        let synced = matches!(before.last(), Some(Ev::Dsb | Ev::Clean(..)));
        assert_eq!(synced, barrier, "{defects}: {:?}", p.log);
    }
}

#[test]
fn bbm_late_tlbi() {
    let (mut kvm, mut p) = vm(Defects::BBM_LATE_TLBI);
    map(&mut kvm, &mut p, A, FRAME);
    p.log.clear();
    map(&mut kvm, &mut p, A, FRAME.add(0x1000));
    let seen: Vec<_> = p.log.iter().filter(|e| matches!(e, Ev::Write(..) | Ev::Flush(_))).cloned().collect();
    assert!(matches!(seen.as_slice(), [Ev::Write(_, _, 0), Ev::Write(..), Ev::Flush(0)]), "{seen:?}");
}

#[test]
fn tlb_flush_stub() {
    for (defects, flushes) in [(Defects::NONE, 1), (Defects::TLB_FLUSH_STUB, 0)] {
        let (mut kvm, mut p) = vm(defects);
        map(&mut kvm, &mut p, A, FRAME);
        kvm.stage2_clear_pte(&mut p, Ipa(A)).unwrap();
        assert_eq!(p.flushes(), flushes, "{defects}");
    }
}

#[test]
fn no_dcache_clean() {
    // The seed's set_pte_ext and flush_pmd_entry clean each entry; only the new level-2 table
    // is never cleaned.
    for (defects, entry_cleans, table_cleans) in [(Defects::NONE, 3, 2), (Defects::NO_DCACHE_CLEAN, 3, 1)] {
        let (mut kvm, mut p) = vm(defects);
        map(&mut kvm, &mut p, A, FRAME);
        let cleans = |len| p.log.iter().filter(|e| matches!(e, Ev::Clean(_, l) if *l == len)).count();
        assert_eq!(cleans(8), entry_cleans, "{defects}");
        assert_eq!(cleans(4096), table_cleans, "{defects}: the seed cleans only new level-3 tables");
    }
}

#[test]
fn pgd_tail_refcount() {
    let high = 1u64 << 39;
    let (mut kvm, mut p) = vm(Defects::PGD_TAIL_REFCOUNT);
    let root = kvm.root().unwrap();
    map(&mut kvm, &mut p, high, FRAME);
    assert_eq!((p.count_of(root), p.count_of(root.add(4096))), (1, 1), "the reference lands on the tail");
    kvm.stage2_clear_pte(&mut p, Ipa(high)).unwrap();
    assert!(!p.is_allocated(root.add(4096)), "put_page to zero freed the live root's tail page");
    // The fixed port keeps the tail alive and counts on the head.
    let (mut kvm, mut p) = vm(Defects::NONE);
    let root = kvm.root().unwrap();
    map(&mut kvm, &mut p, high, FRAME);
    kvm.stage2_clear_pte(&mut p, Ipa(high)).unwrap();
    assert!(p.is_allocated(root.add(4096)));
}

#[test]
fn pgd_tail_refcount_warns_at_teardown_like_the_seed() {
    let (mut kvm, mut p) = vm(Defects::PGD_TAIL_REFCOUNT);
    let root = kvm.root().unwrap();
    map(&mut kvm, &mut p, A, FRAME);
    kvm.free_memory_caches(&mut p);
    kvm.free_stage2_pgd(&mut p);
    assert_eq!(p.warnings, vec![Warning::RootCountAtFree { page: root.add(4096), count: 0 }]);
}

#[test]
fn no_bbm() {
    let (mut kvm, mut p) = vm(Defects::NO_BBM);
    map(&mut kvm, &mut p, A, FRAME);
    p.log.clear();
    map(&mut kvm, &mut p, A, FRAME.add(0x1000));
    let old = Descriptor::page(FRAME, S2Attrs::GUEST_RW).0;
    let new = Descriptor::page(FRAME.add(0x1000), S2Attrs::GUEST_RW).0;
    let seen: Vec<_> = p.log.iter().filter(|e| matches!(e, Ev::Write(..) | Ev::Flush(_))).cloned().collect();
    assert!(
        matches!(seen.as_slice(), [Ev::Write(_, o, n), Ev::Flush(0)] if *o == old && *n == new),
        "{seen:?}"
    );
}

#[test]
fn spte_writable() {
    for (defects, attrs) in [(Defects::NONE, S2Attrs::GUEST_RO), (Defects::SPTE_WRITABLE, S2Attrs::GUEST_RW)]
    {
        let (mut kvm, mut p) = vm(defects);
        kvm.add_memslot(Memslot { id: 0, base_gfn: A >> 12, npages: 16, userspace_addr: Hva(0x8000_0000) })
            .unwrap();
        map(&mut kvm, &mut p, A, FRAME);
        kvm.set_spte_hva(&mut p, Hva(0x8000_0000), FRAME.add(0x1000)).unwrap();
        assert_eq!(lookup(&kvm, &p, A).unwrap().attrs(), Some(attrs), "{defects}");
    }
}

#[test]
fn ioremap_32bit_mask() {
    for (defects, mapped) in [(Defects::NONE, true), (Defects::IOREMAP_32BIT_MASK, false)] {
        let (mut kvm, mut p) = vm(defects);
        assert_eq!(kvm.phys_addr_ioremap(&mut p, Ipa(0x1_0000_0000), Pa(0x4600_0000), 0x1000), Ok(()));
        assert_eq!(lookup(&kvm, &p, 0x1_0000_0000).is_ok(), mapped, "{defects}");
    }
}

/// A VM with one memslot of `pages` pages at `gpa`, backed from `hva`.
fn vm_with_slot(defects: Defects, gpa: u64, pages: u64, hva: u64) -> (Kvm, TestPlatform) {
    let (mut kvm, p) = vm(defects);
    kvm.add_memslot(Memslot::new(0, Ipa(gpa), pages, Hva(hva)).unwrap()).unwrap();
    (kvm, p)
}

#[test]
fn walk_unaligned_advance() {
    // Level-2 entry 0 is invalid; the unmap starts in it at 0x1f_f000.
    for (defects, survive) in [(Defects::NONE, false), (Defects::WALK_UNALIGNED_ADVANCE, true)] {
        let (mut kvm, mut p) = vm_with_slot(defects, 0, 0x400, 0x7000_0000);
        map(&mut kvm, &mut p, A, FRAME);
        map(&mut kvm, &mut p, A + 0x1000, FRAME.add(0x1000));
        kvm.unmap_hva_range(&mut p, Hva(0x701f_f000), Hva(0x7020_2000)).unwrap();
        assert_eq!(lookup(&kvm, &p, A).is_ok(), survive, "{defects}");
        assert_eq!(lookup(&kvm, &p, A + 0x1000).is_ok(), survive, "{defects}");
    }
    // From an aligned start both walks are the same.
    let (mut kvm, mut p) = vm_with_slot(Defects::WALK_UNALIGNED_ADVANCE, 0, 0x400, 0x7000_0000);
    map(&mut kvm, &mut p, A, FRAME);
    kvm.unmap_hva_range(&mut p, Hva(0x7000_0000), Hva(0x7020_1000)).unwrap();
    assert_eq!(lookup(&kvm, &p, A), Err(1));
}

#[test]
fn unmap_skip_to_end() {
    const GIB: u64 = 0x4000_0000;
    for (defects, survives) in [(Defects::NONE, false), (Defects::UNMAP_SKIP_TO_END, true)] {
        // After freeing the level-2 table of 1 GiB, the walk jumps to the end of the range.
        let (mut kvm, mut p) = vm_with_slot(defects, GIB, 0x40010, 0x1_0000_0000);
        map(&mut kvm, &mut p, GIB, FRAME);
        map(&mut kvm, &mut p, 2 * GIB, FRAME.add(0x1000));
        kvm.unmap_hva_range(&mut p, Hva(0x1_0000_0000), Hva(0x1_4001_0000)).unwrap();
        assert_eq!(lookup(&kvm, &p, GIB), Err(1), "{defects}");
        assert_eq!(lookup(&kvm, &p, 2 * GIB).is_ok(), survives, "{defects}");
        // An invalid level-1 entry at the start ends the walk as well.
        let (mut kvm, mut p) = vm_with_slot(defects, 0, 0x40010, 0x1_0000_0000);
        map(&mut kvm, &mut p, GIB, FRAME);
        kvm.unmap_hva_range(&mut p, Hva(0x1_0000_0000), Hva(0x1_4001_0000)).unwrap();
        assert_eq!(lookup(&kvm, &p, GIB).is_ok(), survives, "{defects}");
    }
    // Within one level-2 table (the table is not freed) nothing is skipped.
    let (mut kvm, mut p) = vm_with_slot(Defects::UNMAP_SKIP_TO_END, GIB, 0x400, 0x1_0000_0000);
    map(&mut kvm, &mut p, GIB, FRAME);
    map(&mut kvm, &mut p, GIB + 0x20_0000, FRAME.add(0x1000));
    kvm.unmap_hva_range(&mut p, Hva(0x1_0000_0000), Hva(0x1_0040_0000)).unwrap();
    assert_eq!(lookup(&kvm, &p, GIB + 0x20_0000), Err(1));
}

#[test]
fn replace_extra_ref() {
    for (defects, count, freed) in [(Defects::NONE, 2, true), (Defects::REPLACE_EXTRA_REF, 4, false)] {
        let (mut kvm, mut p) = vm(defects);
        kvm.map_guest_page(&mut p, Ipa(A), FRAME, false).unwrap();
        // Root entry 0, then level-2 entry 1 (A is 2 MiB): the level-3 table of A.
        let level2 = p.peek(kvm.root().unwrap().0).output_address();
        let table = p.peek(level2.0 + 8).output_address();
        map(&mut kvm, &mut p, A, FRAME); // permission upgrade: valid to valid
        map(&mut kvm, &mut p, A, FRAME.add(0x1000)); // remap: valid to valid
        assert_eq!(p.count_of(table), count, "{defects}");
        kvm.stage2_clear_pte(&mut p, Ipa(A)).unwrap();
        assert_eq!(!p.is_allocated(table), freed, "{defects}: the emptied table is freed");
    }
}

#[test]
fn root_page0_only() {
    let high = 1u64 << 39;
    for (defects, leaked) in [(Defects::NONE, 0), (Defects::ROOT_PAGE0_ONLY, 2)] {
        let (mut kvm, mut p) = vm(defects);
        map(&mut kvm, &mut p, A, FRAME);
        map(&mut kvm, &mut p, high, FRAME.add(0x1000));
        kvm.free_memory_caches(&mut p);
        kvm.free_stage2_pgd(&mut p);
        // The level-2 and level-3 tables of 2^39 stay allocated.
        assert_eq!(p.allocated_pages(), leaked, "{defects}");
        assert_eq!(p.warnings.is_empty(), leaked == 0, "{defects}: {:?}", p.warnings);
    }
}

/// Two VMs with one-bit VMIDs: VM a runs, then VM b's update rolls the space over.
fn rollover_pair(defects: Defects) -> (TestPlatform, VmidAllocator, Kvm, Kvm) {
    let mut p = TestPlatform::new();
    let mut alloc = VmidAllocator::new(1).unwrap();
    let mut a = Kvm::new(defects);
    a.alloc_stage2_pgd(&mut p).unwrap();
    let mut b = Kvm::new(defects);
    b.alloc_stage2_pgd(&mut p).unwrap();
    a.vcpu_enter(&mut alloc, &mut p).unwrap();
    b.update_vttbr(&mut alloc, &mut p).unwrap();
    (p, alloc, a, b)
}

#[test]
fn vmid_reuse_no_flush() {
    for (defects, flushed) in [(Defects::NONE, 1), (Defects::VMID_REUSE_NO_FLUSH, 0)] {
        let (p, alloc, a, b) = rollover_pair(defects);
        assert_eq!(alloc.generation(), 2, "{defects}: a rollover");
        assert_eq!((a.vttbr().vmid(), b.vttbr().vmid()), (Vmid(1), Vmid(1)), "{defects}");
        assert_eq!(p.flush_alls(), flushed, "{defects}: the reused VMID's entries are invalidated");
    }
}

#[test]
fn vmid_wrap_alias() {
    for (defects, generation, vmids) in
        [(Defects::NONE, 2, [1, 2, 3, 1]), (Defects::VMID_WRAP_ALIAS, 1, [1, 2, 3, 0])]
    {
        let mut p = TestPlatform::new();
        let mut alloc = VmidAllocator::new(2).unwrap();
        let mut got = [0u8; 4];
        for g in &mut got {
            let mut k = Kvm::new(defects);
            k.alloc_stage2_pgd(&mut p).unwrap();
            *g = k.update_vttbr(&mut alloc, &mut p).unwrap().vmid().0;
        }
        assert_eq!((alloc.generation(), got), (generation, vmids), "{defects}");
        assert_eq!(p.flush_alls(), (generation - 1) as usize, "{defects}");
    }
    // The fifth VM gets VMID 1 in the same generation as the first: two live VMs share it.
    let mut p = TestPlatform::new();
    let mut alloc = VmidAllocator::new(2).unwrap();
    let mut vms: Vec<Kvm> = (0..5).map(|_| Kvm::new(Defects::VMID_WRAP_ALIAS)).collect();
    for k in &mut vms {
        k.alloc_stage2_pgd(&mut p).unwrap();
        k.update_vttbr(&mut alloc, &mut p).unwrap();
    }
    let first = vms[0].vcpu_enter(&mut alloc, &mut p).unwrap();
    let fifth = vms[4].vcpu_enter(&mut alloc, &mut p).unwrap();
    assert_eq!(first.vmid(), fifth.vmid());
}

#[test]
fn vmid_unallocated_entry() {
    for (defects, vmid, generation) in
        [(Defects::NONE, Vmid(1), 1), (Defects::VMID_UNALLOCATED_ENTRY, Vmid(0), 0)]
    {
        let mut p = TestPlatform::new();
        let mut alloc = VmidAllocator::new(8).unwrap();
        let mut kvm = Kvm::new(defects);
        kvm.alloc_stage2_pgd(&mut p).unwrap();
        let entered = kvm.vcpu_enter(&mut alloc, &mut p).unwrap();
        assert_eq!(entered.root(), kvm.root().unwrap(), "{defects}");
        assert_eq!((entered.vmid(), kvm.vmid_state().generation), (vmid, generation), "{defects}");
        // An explicit update_vttbr allocates in both cases.
        assert_eq!(kvm.update_vttbr(&mut alloc, &mut p).unwrap().vmid(), Vmid(1), "{defects}");
    }
}

#[test]
fn spte_invalid_slot() {
    const H0: u64 = 0x7000_0000;
    const H1: u64 = 0x7010_0000;
    for (defects, remapped) in [(Defects::NONE, false), (Defects::SPTE_INVALID_SLOT, true)] {
        let (mut kvm, mut p) = vm_with_slot(defects, 0x10_0000, 16, H0);
        kvm.add_memslot(Memslot::new(1, Ipa(0x11_0000), 16, Hva(H1)).unwrap()).unwrap();
        map(&mut kvm, &mut p, 0x10_0000, FRAME);
        map(&mut kvm, &mut p, 0x11_0000, FRAME.add(0x1000));
        kvm.remove_memslot(&mut p, 1).unwrap();
        assert!(lookup(&kvm, &p, 0x11_0000).is_err(), "{defects}: the deletion unmaps the slot");
        kvm.set_spte_hva(&mut p, Hva(H1), FRAME.add(0x2000)).unwrap();
        assert_eq!(lookup(&kvm, &p, 0x11_0000).is_ok(), remapped, "{defects}");
        assert_eq!(kvm.memslots().len(), 1, "{defects}: the slot is gone from the memslots");
    }
    // The next memslot change ends the deletion: the slot is no longer found.
    let (mut kvm, mut p) = vm_with_slot(Defects::SPTE_INVALID_SLOT, 0x10_0000, 16, H0);
    kvm.add_memslot(Memslot::new(1, Ipa(0x11_0000), 16, Hva(H1)).unwrap()).unwrap();
    map(&mut kvm, &mut p, 0x10_0000, FRAME);
    kvm.remove_memslot(&mut p, 1).unwrap();
    kvm.add_memslot(Memslot::new(2, Ipa(0x20_0000), 16, Hva(0x7020_0000)).unwrap()).unwrap();
    kvm.set_spte_hva(&mut p, Hva(H1), FRAME.add(0x2000)).unwrap();
    assert!(lookup(&kvm, &p, 0x11_0000).is_err());
}

#[test]
fn clear_no_tlbi() {
    for (defects, clear_flushes) in [(Defects::NONE, 1), (Defects::CLEAR_NO_TLBI, 0)] {
        let (mut kvm, mut p) = vm(defects);
        map(&mut kvm, &mut p, A, FRAME);
        map(&mut kvm, &mut p, A + 0x1000, FRAME.add(0x1000));
        p.log.clear();
        map(&mut kvm, &mut p, A, FRAME.add(0x2000));
        assert_eq!(p.flushes(), 1, "{defects}: a replacement still invalidates");
        p.log.clear();
        kvm.stage2_clear_pte(&mut p, Ipa(A)).unwrap();
        assert_eq!(p.flushes(), clear_flushes, "{defects}");
    }
}

#[test]
fn every_switch_has_a_test_here() {
    let src = include_str!("defects.rs");
    for (_, name, _) in Defects::ALL {
        let test = format!("fn {}()", name.replace('-', "_"));
        // vmid-stale-check lives with the VMID tests.
        let found = src.contains(&test)
            || include_str!("vmid.rs").contains("VMID_STALE_CHECK") && *name == "vmid-stale-check";
        assert!(found, "no test for defect {name}");
    }
}
