//! Each seed defect, switched on, brings back the seed's behaviour on its trigger; switched
//! off, the same trigger behaves as later kernels do.

mod common;

use common::{Ev, TestPlatform};
use mmu::{Defects, Descriptor, Error, Hva, Ipa, Kvm, Memslot, Pa, S2Attrs, Warning};

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
