//! Edges of the stage-2 table code, one test per edge, against the test platform.

mod common;

use common::{Ev, TestPlatform};
use mmu::{Defects, Descriptor, Error, Hva, Ipa, Kvm, Memslot, Pa, S2Attrs};

const FRAME: Pa = Pa(0x4400_0000);
const LAST_IPA: u64 = (1 << 40) - 4096;

fn vm() -> (Kvm, TestPlatform) {
    let mut p = TestPlatform::new();
    let mut kvm = Kvm::new(Defects::NONE);
    kvm.alloc_stage2_pgd(&mut p).unwrap();
    (kvm, p)
}

fn root(kvm: &Kvm) -> Pa {
    kvm.root().unwrap()
}

/// Maps and checks the walk finds the page with the right attributes.
fn map_and_check(kvm: &mut Kvm, p: &mut TestPlatform, ipa: u64, pa: Pa) {
    kvm.map_guest_page(p, Ipa(ipa), pa, true).unwrap();
    let d = p.translate(root(kvm), ipa).unwrap();
    assert_eq!(d.output_address(), pa);
    assert_eq!(d.attrs(), Some(S2Attrs::GUEST_RW));
}

/// Every table reachable from the root holds 1 + its valid entries; the root on its head.
fn assert_refcounts(kvm: &Kvm, p: &TestPlatform) {
    let r = root(kvm);
    assert_eq!(p.count_of(r), 1 + p.valid_entries(r, 1024), "root head count");
    assert_eq!(p.count_of(r.add(4096)), 0, "root tail count");
    for i in 0..1024u64 {
        let l1 = p.peek(r.0 + i * 8);
        if !l1.is_valid() {
            continue;
        }
        let l2 = l1.output_address();
        assert_eq!(p.count_of(l2), 1 + p.valid_entries(l2, 512), "level-2 table {l2}");
        for j in 0..512u64 {
            let e = p.peek(l2.0 + j * 8);
            if e.is_valid() {
                let l3 = e.output_address();
                assert_eq!(p.count_of(l3), 1 + p.valid_entries(l3, 512), "level-3 table {l3}");
            }
        }
    }
}

#[test]
fn root_is_two_aligned_pages_cleaned_once() {
    let (kvm, p) = vm();
    let r = root(&kvm);
    assert_eq!(r.0 % 8192, 0);
    assert_eq!(p.log, vec![Ev::Alloc(r.0, 1), Ev::Clean(r.0, 8192)]);
    assert_eq!(p.count_of(r), 1);
    let mut kvm2 = kvm.clone();
    let mut p2 = TestPlatform::new();
    assert_eq!(kvm2.alloc_stage2_pgd(&mut p2), Err(Error::AlreadyInitialized));
}

#[test]
fn map_first_ipa() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 0, FRAME);
    assert_refcounts(&kvm, &p);
    assert!(p.misuse.is_empty());
}

#[test]
fn map_last_ipa() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, LAST_IPA, FRAME);
    let l1 = p.peek(root(&kvm).0 + 1023 * 8);
    assert!(l1.is_table(1));
    assert_refcounts(&kvm, &p);
}

#[test]
fn ipa_beyond_40_bits_is_an_error() {
    let (mut kvm, mut p) = vm();
    assert_eq!(kvm.map_guest_page(&mut p, Ipa(1 << 40), FRAME, true), Err(Error::OutOfRange));
    assert_eq!(kvm.stage2_clear_pte(&mut p, Ipa(!0xfff)), Err(Error::OutOfRange));
    assert_eq!(kvm.map_guest_page(&mut p, Ipa(0x1234), FRAME, true), Err(Error::Misaligned));
    assert_eq!(kvm.map_guest_page(&mut p, Ipa(0), Pa(0x4400_0800), true), Err(Error::Misaligned));
    assert_eq!(kvm.map_guest_page(&mut p, Ipa(0), Pa(1 << 40), true), Err(Error::OutOfRange));
}

#[test]
fn map_in_second_root_page_counts_on_the_head() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 1 << 39, FRAME);
    let r = root(&kvm);
    assert!(p.peek(r.0 + 512 * 8).is_table(1), "entry 512 lives in the second page");
    assert_eq!(p.count_of(r), 2);
    assert_eq!(p.count_of(r.add(4096)), 0);
    kvm.stage2_clear_pte(&mut p, Ipa(1 << 39)).unwrap();
    assert_eq!(p.count_of(r), 1);
    assert!(p.is_allocated(r.add(4096)));
    assert!(p.misuse.is_empty());
}

#[test]
fn map_across_2mib_boundary() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 0x1f_f000, FRAME);
    map_and_check(&mut kvm, &mut p, 0x20_0000, FRAME.add(4096));
    let l2 = p.peek(root(&kvm).0).output_address();
    assert!(p.peek(l2.0).is_table(2) && p.peek(l2.0 + 8).is_table(2), "two level-3 tables");
    assert_eq!(p.count_of(l2), 3);
    assert_refcounts(&kvm, &p);
}

#[test]
fn map_across_1gib_boundary() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 0x3fff_f000, FRAME);
    map_and_check(&mut kvm, &mut p, 0x4000_0000, FRAME.add(4096));
    let r = root(&kvm);
    assert!(p.peek(r.0).is_table(1) && p.peek(r.0 + 8).is_table(1), "two level-2 tables");
    assert_eq!(p.count_of(r), 3);
    assert_refcounts(&kvm, &p);
}

#[test]
fn clear_last_entry_of_a_table_frees_it_after_the_flush() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 0x20_0000, FRAME);
    let r = root(&kvm);
    let l2 = p.peek(r.0).output_address();
    let l3 = p.peek(l2.0 + 8).output_address();
    p.log.clear();
    kvm.stage2_clear_pte(&mut p, Ipa(0x20_0000)).unwrap();
    assert!(!p.is_allocated(l3) && !p.is_allocated(l2));
    assert_eq!(p.count_of(r), 1);
    assert!(!p.peek(r.0).is_valid());
    let flush = p.log.iter().position(|e| matches!(e, Ev::Flush(_))).unwrap();
    let first_free = p.log.iter().position(|e| matches!(e, Ev::Free(..))).unwrap();
    assert!(flush < first_free, "tables are freed after the invalidation: {:?}", p.log);
    assert_eq!(p.flushes(), 1);
    assert!(p.misuse.is_empty());
}

#[test]
fn clear_one_of_two_entries_keeps_the_table() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 0x1000, FRAME);
    map_and_check(&mut kvm, &mut p, 0x2000, FRAME);
    kvm.stage2_clear_pte(&mut p, Ipa(0x1000)).unwrap();
    assert!(p.translate(root(&kvm), 0x2000).is_ok());
    assert_eq!(p.translate(root(&kvm), 0x1000), Err(3));
    assert_refcounts(&kvm, &p);
}

#[test]
fn clear_of_unmapped_ipa_changes_nothing() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 0x1000, FRAME);
    let before = p.log.len();
    kvm.stage2_clear_pte(&mut p, Ipa(0x2000)).unwrap();
    kvm.stage2_clear_pte(&mut p, Ipa(0x4000_0000)).unwrap();
    assert_eq!(p.log.len(), before, "no write, no flush: {:?}", &p.log[before..]);
    assert_refcounts(&kvm, &p);
}

#[test]
fn remap_live_entry_breaks_before_make() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 0x1000, FRAME);
    p.log.clear();
    map_and_check(&mut kvm, &mut p, 0x1000, FRAME.add(4096));
    let writes: Vec<_> =
        p.log.iter().filter(|e| matches!(e, Ev::Write(..) | Ev::Flush(_))).cloned().collect();
    let new = Descriptor::page(FRAME.add(4096), S2Attrs::GUEST_RW).0;
    let old = Descriptor::page(FRAME, S2Attrs::GUEST_RW).0;
    assert!(
        matches!(writes.as_slice(),
        [Ev::Write(_, o1, 0), Ev::Flush(0), Ev::Write(_, 0, n)] if *o1 == old && *n == new),
        "{writes:?}"
    );
    assert_refcounts(&kvm, &p);
}

#[test]
fn remap_identical_entry_is_a_no_op() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 0x1000, FRAME);
    p.log.clear();
    map_and_check(&mut kvm, &mut p, 0x1000, FRAME);
    assert!(p.log.iter().all(|e| !matches!(e, Ev::Write(..) | Ev::Flush(_))));
}

#[test]
fn every_descriptor_write_is_cleaned() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 0x7f_c000_0000, FRAME);
    kvm.stage2_clear_pte(&mut p, Ipa(0x7f_c000_0000)).unwrap();
    for (i, e) in p.log.iter().enumerate() {
        if let Ev::Write(pa, ..) = e {
            assert_eq!(p.log.get(i + 1), Some(&Ev::Clean(*pa, 8)), "write at {pa:#x} not cleaned");
        }
    }
    // Both new tables were cleaned whole before being linked.
    assert_eq!(p.log.iter().filter(|e| matches!(e, Ev::Clean(_, 4096))).count(), 2);
}

#[test]
fn cache_refill() {
    let (mut kvm, mut p) = vm();
    kvm.topup(&mut p, 2, 40).unwrap();
    assert_eq!(kvm.cache().len(), 40);
    map_and_check(&mut kvm, &mut p, 0x1000, FRAME); // uses two tables
    assert_eq!(kvm.cache().len(), 38);
    kvm.topup(&mut p, 2, 40).unwrap(); // at least min held: no refill
    assert_eq!(kvm.cache().len(), 38);
    kvm.topup(&mut p, 39, 40).unwrap(); // below min: refill to max
    assert_eq!(kvm.cache().len(), 40);
    assert_eq!(kvm.topup(&mut p, 2, 41), Err(Error::BadCacheRequest));
    assert_eq!(kvm.topup(&mut p, 3, 2), Err(Error::BadCacheRequest));
    let held = p.allocated_pages();
    kvm.free_memory_caches(&mut p);
    assert_eq!(p.allocated_pages(), held - 40);
}

#[test]
fn cache_topup_failure_keeps_pages_and_map_fails_cleanly() {
    let (mut kvm, mut p) = vm();
    p.fail_after = Some(5);
    assert_eq!(kvm.map_guest_page(&mut p, Ipa(0x1000), FRAME, true), Err(Error::NoMemory));
    assert_eq!(kvm.cache().len(), 5);
    assert_eq!(p.translate(root(&kvm), 0x1000), Err(1));
    map_and_check(&mut kvm, &mut p, 0x1000, FRAME);
}

#[test]
#[should_panic(expected = "memory cache empty")]
fn cache_alloc_without_topup_is_a_bug() {
    let mut c = mmu::MemoryCache::new();
    c.alloc();
}

#[test]
fn teardown_frees_everything_without_warnings() {
    let (mut kvm, mut p) = vm();
    for ipa in [0, 0x1000, 0x20_0000, 0x4000_0000, 1 << 39, LAST_IPA] {
        map_and_check(&mut kvm, &mut p, ipa, FRAME);
    }
    kvm.free_memory_caches(&mut p);
    kvm.free_stage2_pgd(&mut p);
    assert_eq!(p.allocated_pages(), 0);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert!(p.misuse.is_empty(), "{:?}", p.misuse);
    assert_eq!(kvm.root(), None);
    kvm.free_stage2_pgd(&mut p); // a second free is a no-op
}

#[test]
fn ioremap_range_not_page_aligned() {
    let (mut kvm, mut p) = vm();
    // 0x1800..0x2800 touches two pages; the device offset 0x234 is dropped.
    kvm.phys_addr_ioremap(&mut p, Ipa(0x1800), Pa(0x4600_0234), 0x1000).unwrap();
    for (ipa, pa) in [(0x1000, 0x4600_0000), (0x2000, 0x4600_1000)] {
        let d = p.translate(root(&kvm), ipa).unwrap();
        assert_eq!(d.output_address(), Pa(pa));
        assert_eq!(d.attrs(), Some(S2Attrs::DEVICE_RW));
    }
    assert_eq!(p.translate(root(&kvm), 0x3000), Err(3));
    // The private cache is freed: only the root and two tables remain.
    assert_eq!(p.allocated_pages(), 4);
    assert_refcounts(&kvm, &p);
}

#[test]
fn ioremap_over_live_mapping_fails_with_efault() {
    let (mut kvm, mut p) = vm();
    map_and_check(&mut kvm, &mut p, 0x2000, FRAME);
    assert_eq!(kvm.phys_addr_ioremap(&mut p, Ipa(0x1000), Pa(0x4600_0000), 0x3000), Err(Error::Fault));
    assert!(p.translate(root(&kvm), 0x1000).is_ok(), "pages before the clash stay mapped");
    assert_eq!(p.translate(root(&kvm), 0x2000).unwrap().output_address(), FRAME);
    assert_eq!(p.translate(root(&kvm), 0x3000), Err(3));
    assert!(p.misuse.is_empty());
}

#[test]
fn ioremap_above_4gib() {
    let (mut kvm, mut p) = vm();
    kvm.phys_addr_ioremap(&mut p, Ipa(0x1_0000_0000), Pa(0x4600_0000), 0x2000).unwrap();
    assert!(p.translate(root(&kvm), 0x1_0000_1000).is_ok());
    assert_eq!(kvm.phys_addr_ioremap(&mut p, Ipa(LAST_IPA), Pa(0x4600_0000), 0x2000), Err(Error::OutOfRange));
}

/// An unaligned IPA touches one page more than `size`, and that page takes the next frame:
/// when it would lie past the 40-bit PA range, nothing is mapped (found by the fuzz smoke:
/// the check looked at `pa + size - 1` only and mapped PA 1 << 40).
#[test]
fn ioremap_refuses_a_last_frame_past_the_pa_range() {
    let (mut kvm, mut p) = vm();
    let last_page = Pa((1 << 40) - 0x1000);
    assert_eq!(kvm.phys_addr_ioremap(&mut p, Ipa(0x1_0000_0f63), last_page, 0x1000), Err(Error::OutOfRange));
    assert!(p.translate(root(&kvm), 0x1_0000_0000).is_err());
    // Aligned, the same range is one page, the last of the PA range.
    kvm.phys_addr_ioremap(&mut p, Ipa(0x1_0000_0000), last_page, 0x1000).unwrap();
    assert!(p.translate(root(&kvm), 0x1_0000_0000).is_ok());
}

fn with_memslot() -> (Kvm, TestPlatform) {
    let (mut kvm, p) = vm();
    kvm.add_memslot(Memslot { id: 1, base_gfn: 0x100, npages: 0x400, userspace_addr: Hva(0x7000_0000) })
        .unwrap();
    (kvm, p)
}

#[test]
fn unmap_hva_translates_through_the_memslot() {
    let (mut kvm, mut p) = with_memslot();
    map_and_check(&mut kvm, &mut p, 0x10_3000, FRAME);
    kvm.unmap_hva(&mut p, Hva(0x7000_3000)).unwrap();
    assert_eq!(p.translate(root(&kvm), 0x10_3000), Err(1), "last entry gone: tables freed");
    kvm.unmap_hva(&mut p, Hva(0x1234_5000)).unwrap(); // no slot: nothing
}

#[test]
fn unmap_hva_range_clears_only_inside_the_range() {
    let (mut kvm, mut p) = with_memslot();
    for gpa in [0x10_0000, 0x10_1000, 0x20_0000, 0x4ff_f000] {
        map_and_check(&mut kvm, &mut p, gpa, FRAME);
    }
    kvm.unmap_hva_range(&mut p, Hva(0x6000_0000), Hva(0x7010_0000)).unwrap();
    // Both pages of the first 2 MiB are gone, and with them their level-3 table.
    assert_eq!(p.translate(root(&kvm), 0x10_0000), Err(2));
    assert_eq!(p.translate(root(&kvm), 0x10_1000), Err(2));
    assert!(p.translate(root(&kvm), 0x20_0000).is_ok());
    assert!(p.translate(root(&kvm), 0x4ff_f000).is_ok(), "outside the memslot's gpa range untouched");
    assert_eq!(kvm.unmap_hva_range(&mut p, Hva(0x7000_0800), Hva(0x7000_2000)), Err(Error::Misaligned));
    assert_refcounts(&kvm, &p);
}

#[test]
fn unmap_hva_range_over_a_huge_empty_range_is_cheap() {
    let (mut kvm, mut p) = vm();
    kvm.add_memslot(Memslot { id: 0, base_gfn: 0, npages: 1 << 28, userspace_addr: Hva(0) }).unwrap();
    map_and_check(&mut kvm, &mut p, LAST_IPA, FRAME);
    let before = p.log.len();
    kvm.unmap_hva_range(&mut p, Hva(0), Hva(1 << 40)).unwrap();
    assert_eq!(p.translate(root(&kvm), LAST_IPA), Err(1));
    assert!(p.log.len() - before < 20, "range clear skips empty regions");
}

#[test]
fn set_spte_hva_replaces_existing_entries_read_only() {
    let (mut kvm, mut p) = with_memslot();
    map_and_check(&mut kvm, &mut p, 0x10_0000, FRAME);
    kvm.set_spte_hva(&mut p, Hva(0x7000_0000), FRAME.add(0x1000)).unwrap();
    let d = p.translate(root(&kvm), 0x10_0000).unwrap();
    assert_eq!((d.output_address(), d.attrs()), (FRAME.add(0x1000), Some(S2Attrs::GUEST_RO)));
    // A neighbour in the same level-3 table gets the entry; a page without a table does not.
    kvm.set_spte_hva(&mut p, Hva(0x7000_1000), FRAME).unwrap();
    assert!(p.translate(root(&kvm), 0x10_1000).is_ok());
    kvm.set_spte_hva(&mut p, Hva(0x7020_0000), FRAME).unwrap();
    assert_eq!(p.translate(root(&kvm), 0x30_0000), Err(2));
    assert_refcounts(&kvm, &p);
}

#[test]
fn memslot_mistakes_are_errors() {
    let (mut kvm, mut p) = with_memslot();
    let slot = |id, base_gfn, npages, hva| Memslot { id, base_gfn, npages, userspace_addr: Hva(hva) };
    assert_eq!(kvm.add_memslot(slot(1, 0x9000, 1, 0)), Err(Error::MemslotOverlap), "id taken");
    assert_eq!(kvm.add_memslot(slot(2, 0x4ff, 2, 0)), Err(Error::MemslotOverlap), "gpa overlap");
    assert_eq!(kvm.add_memslot(slot(2, 0, 0, 0)), Err(Error::OutOfRange));
    assert_eq!(kvm.add_memslot(slot(2, 1 << 28, 1, 0)), Err(Error::OutOfRange));
    assert_eq!(kvm.add_memslot(slot(2, 0, 1, 0x10)), Err(Error::Misaligned));
    assert_eq!(kvm.remove_memslot(&mut p, 7), Err(Error::UnknownMemslot));
    kvm.add_memslot(slot(0, 0, 1, 0x7000_0000)).unwrap(); // hva aliasing is allowed
    assert_eq!(kvm.memslots().iter().map(|s| s.id).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(kvm.remove_memslot(&mut p, 1).unwrap().base_gfn, 0x100);
    for id in 1..32 {
        kvm.add_memslot(slot(id, 0x1000 + id as u64, 1, 0)).unwrap();
    }
    assert_eq!(kvm.add_memslot(slot(40, 0x9000, 1, 0)), Err(Error::NoMemslotSpace));
}

#[test]
fn operations_without_a_root() {
    let mut p = TestPlatform::new();
    let mut kvm = Kvm::new(Defects::NONE);
    assert_eq!(kvm.map_guest_page(&mut p, Ipa(0), FRAME, true), Err(Error::NoRoot));
    assert_eq!(kvm.phys_addr_ioremap(&mut p, Ipa(0), FRAME, 1), Err(Error::NoRoot));
    assert_eq!(kvm.unmap_hva(&mut p, Hva(0)), Ok(()));
    assert_eq!(kvm.set_spte_hva(&mut p, Hva(0), FRAME), Ok(()));
    assert!(p.log.is_empty());
}

#[test]
fn allocation_failure_of_the_root() {
    let mut p = TestPlatform::new();
    p.fail_after = Some(0);
    let mut kvm = Kvm::new(Defects::NONE);
    assert_eq!(kvm.alloc_stage2_pgd(&mut p), Err(Error::NoMemory));
    assert_eq!(kvm.root(), None);
    kvm.alloc_stage2_pgd(&mut p).unwrap();
}

#[test]
fn ioremap_allocation_failure_keeps_the_prefix_and_frees_its_cache() {
    let (mut kvm, mut p) = vm();
    // Page 1: its topup allocates two pages, both become tables. Page 2: its topup gets one
    // page (the third allocation) and the fourth fails.
    p.fail_after = Some(3);
    assert_eq!(kvm.phys_addr_ioremap(&mut p, Ipa(0x1000), Pa(0x4600_0000), 0x3000), Err(Error::NoMemory));
    assert!(p.translate(root(&kvm), 0x1000).is_ok());
    assert_eq!(p.translate(root(&kvm), 0x2000), Err(3));
    assert_eq!(p.allocated_pages(), 4, "the root's two pages and two tables; the cache page was freed");
}
