//! The adapter: one `PageTable<S2, Frames>` per VM. The crate's hooks (`TableMeta::flush`
//! and `FrameAllocator`) are static or cloned values without context, so they reach the
//! harness's services through a slot set around every call (thread-local on hosts, a plain
//! static on the single-CPU bare-metal image).

use crate::INFO;
use crate::{
    CHECK_OUTPUT_ADDRESS, CHECK_PROTECT_RANGE, DEFER_TABLE_FREES, MEMORY_TYPE_WITH_BBM, REMAP_WITH_BBM,
    SPLIT_UNMAPS,
};
use alloc::vec::Vec;
use ax_cpu::paging::{MappingFlags, Stage2Pte};
use core::cell::{Cell, RefCell};
use core::ptr::NonNull;
use harness_core::arch::tlb::Tlbi;
use harness_core::arch::{Mem, Pa, Prot, Vmid, Vttbr, PAGE_SIZE};
use harness_core::layout::STUB_IPA;
use harness_core::op::{Config, Defects, Op, MAX_VMS};
use harness_core::result::Errno;
use harness_core::target::{Services, Target, TargetInfo};
use page_table_generic::PageTableEntry;
use page_table_generic::{FrameAllocator, PageTable, PagingError, PhysAddr, TableMeta, VirtAddr};

/// The services of the call running (`None` outside a call).
type Slot = Cell<Option<NonNull<dyn Services>>>;
/// With `defer-table-frees`: the frames the crate released in this call (`None`: free at
/// once).
type Deferred = RefCell<Option<Vec<Pa>>>;
/// Frames set aside in this call for the crate's next allocations ([`top_up`]).
type Reserve = RefCell<Vec<Pa>>;

#[cfg(feature = "std")]
std::thread_local! {
    static SLOT: Slot = const { Cell::new(None) };
    static DEFERRED: Deferred = const { RefCell::new(None) };
    static RESERVE: Reserve = const { RefCell::new(Vec::new()) };
}

#[cfg(not(feature = "std"))]
struct Racy<T>(T);
// Safe because the image runs on one CPU with interrupts that never touch the slots.
#[cfg(not(feature = "std"))]
unsafe impl<T> Sync for Racy<T> {}
#[cfg(not(feature = "std"))]
static SLOT: Racy<Slot> = Racy(Cell::new(None));
#[cfg(not(feature = "std"))]
static DEFERRED: Racy<Deferred> = Racy(RefCell::new(None));
#[cfg(not(feature = "std"))]
static RESERVE: Racy<Reserve> = Racy(RefCell::new(Vec::new()));

fn slot<R>(f: impl FnOnce(&Slot) -> R) -> R {
    #[cfg(feature = "std")]
    return SLOT.with(f);
    #[cfg(not(feature = "std"))]
    return f(&SLOT.0);
}

fn deferred<R>(f: impl FnOnce(&Deferred) -> R) -> R {
    #[cfg(feature = "std")]
    return DEFERRED.with(f);
    #[cfg(not(feature = "std"))]
    return f(&DEFERRED.0);
}

fn reserve<R>(f: impl FnOnce(&Reserve) -> R) -> R {
    #[cfg(feature = "std")]
    return RESERVE.with(f);
    #[cfg(not(feature = "std"))]
    return f(&RESERVE.0);
}

/// Tables a make after a break may need: a 4 KiB page below a level-1 root that an unmap
/// left without its level-2 and level-3 tables.
const MAKE_TABLES: usize = 2;

/// Before a break-before-make, sets aside the `tables` frames the makes may need, as Linux
/// tops up its memory cache before it changes a stage-2 table: a make cannot then fail for
/// want of a table after its break has removed the old mapping, and an allocation failure
/// leaves every mapping as it was. The frames left over go back at the end of the call.
fn top_up(tables: usize) -> Result<(), Errno> {
    while reserve(|r| r.borrow().len()) < tables {
        let pa = services(|s| s.alloc_pages(0)).flatten().ok_or(Errno::NoMemory)?;
        reserve(|r| r.borrow_mut().push(pa));
    }
    Ok(())
}

/// A call is in progress and not unwinding from a panic. The bare-metal image stops a
/// panicking call where it stands (its frames are abandoned, no destructor runs); on hosts
/// the crate's destructors would run during the unwind and free tables, so they are kept
/// from the harness to give the same trace.
fn in_call() -> bool {
    #[cfg(feature = "std")]
    if std::thread::panicking() {
        return false;
    }
    slot(Cell::get).is_some()
}

/// Runs `f` on the current services, if a call is in progress and not unwinding.
fn services<R>(f: impl FnOnce(&mut dyn Services) -> R) -> Option<R> {
    if !in_call() {
        return None;
    }
    let s = slot(Cell::get)?;
    // Safe because the pointer came from a live `&mut` in `Target::call`, which is still
    // running (the slot is cleared when it returns), and the crate calls back one hook at a
    // time.
    Some(f(unsafe { &mut *s.as_ptr() }))
}

/// axvm's `A64HVPagingMetaDataL3`, re-stated: three levels of 9 bits (level-1 root), 4 KiB
/// pages, 2 MiB blocks at most, IPAs below 2^39.
#[derive(Clone, Copy)]
pub struct S2;

impl TableMeta for S2 {
    type P = Stage2Pte;
    const PAGE_SIZE: usize = 4096;
    const LEVEL_BITS: &[usize] = &[9, 9, 9];
    const MAX_BLOCK_LEVEL: usize = 2;
    const STRICT_ADDRESS_WIDTH: bool = true;

    fn flush(_: Option<VirtAddr>) {
        // What axvm's flush executes whatever the address (`dsb ishst; tlbi alle1is; dsb ish;
        // isb`). Outside a call (a table being forgotten) there is nothing to invalidate for.
        if !in_call() {
            return;
        }
        // Safe because this runs either at EL0 under qemu-user, where the harness's SIGILL
        // handler records the TLBI and steps over it (barriers execute normally), or at EL2
        // on the image, where it invalidates.
        unsafe { ax_cpu::virtualization::invalidate_guest_translations_inner_shareable() };
        // At EL2 nothing traps the instruction, which has invalidated: it is recorded here.
        #[cfg(target_os = "none")]
        services(|s| s.tlbi_executed(Tlbi::All));
    }
}

/// Frames from the harness's page pool.
#[derive(Clone, Copy, Default)]
pub struct Frames;

impl FrameAllocator for Frames {
    fn alloc_frame(&self) -> Option<PhysAddr> {
        // The frames set aside are taken in the order they were allocated.
        let set_aside = reserve(|r| {
            let mut r = r.borrow_mut();
            (in_call() && !r.is_empty()).then(|| r.remove(0))
        });
        let pa = match set_aside {
            Some(pa) => pa,
            None => services(|s| s.alloc_pages(0))??,
        };
        Some(PhysAddr::from_usize(pa.0 as usize))
    }

    fn dealloc_frame(&self, frame: PhysAddr) {
        let frame = Pa(frame.as_usize() as u64);
        let deferred = deferred(|d| d.borrow_mut().as_mut().map(|v| v.push(frame)).is_some());
        if !deferred {
            services(|s| s.free_pages(frame, 0));
        }
    }

    fn phys_to_virt(&self, paddr: PhysAddr) -> *mut u8 {
        // The harness compares the pages the crate holds pointers to: tell it each time.
        let ptr = services(|s| s.table_memory(Pa(paddr.as_usize() as u64))).flatten();
        match ptr {
            Some(p) => p.as_ptr().cast(),
            None => panic!("page-table-generic asked for {:#x}, which is not a pool page", paddr.as_usize()),
        }
    }
}

type Table = PageTable<S2, Frames>;

/// The adapter.
#[derive(Default)]
pub struct PageTableGeneric {
    vms: [Option<Table>; MAX_VMS],
    /// The workarounds in force (bit j is workaround j of [`INFO`]).
    workarounds: Defects,
}

/// The crate's flags for a harness protection.
fn flags(p: Prot) -> MappingFlags {
    let mut f = MappingFlags::empty();
    f.set(MappingFlags::READ, p.read);
    f.set(MappingFlags::WRITE, p.write);
    f.set(MappingFlags::EXECUTE, p.exec);
    f.set(MappingFlags::DEVICE, p.mem == Mem::Device);
    f
}

fn errno(e: PagingError) -> Errno {
    match e {
        PagingError::NoMemory => Errno::NoMemory,
        PagingError::AlignmentError { .. } | PagingError::InvalidSize { .. } => Errno::Misaligned,
        PagingError::AddressOverflow { .. } | PagingError::InvalidRange { .. } => Errno::OutOfRange,
        PagingError::MappingConflict { .. } => Errno::BbmRefused,
        PagingError::NotMapped
        | PagingError::HierarchyError { .. }
        | PagingError::StaleHugeSplit { .. }
        | PagingError::StaleMapDeposit { .. } => Errno::Fault,
    }
}

fn vmid(vm: usize) -> Vmid {
    Vmid(vm as u16 + 1)
}

fn va(a: u64) -> VirtAddr {
    VirtAddr::from_usize(a as usize)
}

fn pa(a: u64) -> PhysAddr {
    PhysAddr::from_usize(a as usize)
}

impl Target for PageTableGeneric {
    fn info(&self) -> &'static TargetInfo {
        &INFO
    }

    fn reset(&mut self, config: &Config) {
        self.workarounds = config.defects.workarounds();
        for mut t in self.vms.iter_mut().filter_map(Option::take) {
            // Outside a call the frames go with the harness's pool: the table is leaked,
            // not walked and freed.
            t.leak();
        }
    }

    fn call<S: Services>(&mut self, s: &mut S, op: &Op) -> Result<(), Errno> {
        struct Clear;
        impl Drop for Clear {
            fn drop(&mut self) {
                slot(|c| c.set(None));
            }
        }
        let ptr: NonNull<dyn Services + '_> = NonNull::from(s as &mut dyn Services);
        // Safe because the slot is cleared before `s`'s borrow ends (the guard runs on return
        // and on unwind), so the erased lifetime is never outlived.
        let ptr: NonNull<dyn Services> = unsafe { core::mem::transmute(ptr) };
        slot(|c| c.set(Some(ptr)));
        let _clear = Clear;
        let v = op.vm().map_or(0, usize::from);
        let stub = s.layout().stub_frame();
        let defer = self.workarounds.has(DEFER_TABLE_FREES);
        deferred(|d| *d.borrow_mut() = defer.then(Vec::new));
        // A frame set aside by a call that panicked went with the pool.
        reserve(|r| r.borrow_mut().clear());
        let r = self.dispatch(v, op, stub);
        let left = reserve(|r| core::mem::take(&mut *r.borrow_mut()));
        for f in left {
            s.free_pages(f, 0);
        }
        let frames = deferred(|d| d.borrow_mut().take()).unwrap_or_default();
        if !frames.is_empty() {
            // The unlinking of every released table is invalidated before it is reused.
            S2::flush(None);
            for f in frames {
                s.free_pages(f, 0);
            }
        }
        r
    }

    fn root(&self, vm: u8) -> Option<Pa> {
        let t = self.vms.get(vm as usize)?.as_ref()?;
        Some(Pa(t.root_paddr().as_usize() as u64))
    }

    fn vttbr(&self, vm: u8) -> Vttbr {
        self.root(vm).map_or(Vttbr(0), |root| INFO.geometry.vttbr(root, vmid(vm as usize)))
    }
}

impl Drop for PageTableGeneric {
    fn drop(&mut self) {
        // The tables go with the harness's pool, outside any call.
        self.reset(&Config::default());
    }
}

/// An op of no page: refused for a misaligned address or one past the IPA space, as the
/// crate refuses a misaligned or overflowing range of pages.
fn empty(ipa: u64, frame: u64) -> Result<(), Errno> {
    if !ipa.is_multiple_of(PAGE_SIZE) || !frame.is_multiple_of(PAGE_SIZE) {
        Err(Errno::Misaligned)
    } else if ipa > INFO.geometry.ipa_limit() {
        Err(Errno::OutOfRange)
    } else {
        Ok(())
    }
}

/// `split-unmaps`: the blocks cut by the range's ends split, then the range unmapped in
/// pieces that start at its start, its next 2 MiB boundary and each 1 GiB boundary, so that
/// no piece starts unaligned where the crate may skip an invalid entry.
fn split_unmap(t: &mut Table, ipa: u64, size: u64) -> Result<(), Errno> {
    let end = ipa.checked_add(size).ok_or(Errno::OutOfRange)?;
    if end > INFO.geometry.ipa_limit() || !ipa.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
        return t.unmap(va(ipa), size as usize).map_err(errno);
    }
    split_ends(t, ipa, end)?;
    let (mib, gib) = (2u64 << 20, 1u64 << 30);
    let mut cuts = alloc::vec![ipa, (ipa | (mib - 1)) + 1];
    let mut g = (ipa | (gib - 1)) + 1;
    while g < end {
        cuts.push(g);
        g += gib;
    }
    cuts.push(end);
    cuts.retain(|&c| c <= end);
    cuts.sort_unstable();
    cuts.dedup();
    for w in cuts.windows(2) {
        t.unmap(va(w[0]), (w[1] - w[0]) as usize).map_err(errno)?;
    }
    Ok(())
}

/// `change-memory-type-with-bbm`: the leaves of `[ipa, ipa + size)` whose memory type
/// `prot` changes are broken (unmapped, with the crate's flush), invalidated once more, and
/// made again with `prot`; the blocks the range's ends cut are split first.
fn change_memory_type(t: &mut Table, ipa: u64, size: u64, prot: Prot) -> Result<(), Errno> {
    let end = ipa.checked_add(size).ok_or(Errno::OutOfRange)?;
    if size == 0
        || end > INFO.geometry.ipa_limit()
        || !ipa.is_multiple_of(PAGE_SIZE)
        || !size.is_multiple_of(PAGE_SIZE)
    {
        return Ok(());
    }
    split_ends(t, ipa, end)?;
    let device = prot.mem == Mem::Device;
    let changed: Vec<(u64, u64, u64)> = t
        .walk(va(ipa), va(end))
        .filter(|p| p.is_final_mapping && p.pte.present())
        .filter(|p| p.pte.config(p.level > 1).contains(MappingFlags::DEVICE) != device)
        .map(|p| {
            (
                p.vaddr.as_usize() as u64,
                PAGE_SIZE << (9 * (p.level - 1)),
                p.pte.paddr(p.level > 1).as_usize() as u64,
            )
        })
        .collect();
    // All the frames the makes may need are set aside before the first break, or a failure
    // at a later leaf would return an error with the earlier leaves already changed (corpus:
    // page-table-generic/protect_pages_in_two_tables_after_an_allocation_failure_keeps_both).
    // A break can empty and free the level-3 table of a page and the level-2 table of a page
    // or 2 MiB block, and its make allocates it again; once made, the leaf keeps that table
    // from being emptied by a later break. So the makes allocate at most one frame per
    // distinct such table, and each allocation takes a frame set aside first.
    let mut tables: Vec<(u8, u64)> = Vec::new();
    for &(at, len, _) in &changed {
        if len < 1 << 30 {
            tables.push((2, at >> 30));
        }
        if len == PAGE_SIZE {
            tables.push((3, at >> 21));
        }
    }
    tables.sort_unstable();
    tables.dedup();
    top_up(tables.len())?;
    for (at, len, frame) in changed {
        t.unmap(va(at), len as usize).map_err(errno)?;
        S2::flush(None);
        t.map_linear_pages(va(at), pa(frame), len as usize, flags(prot), true).map_err(errno)?;
    }
    Ok(())
}

/// Splits the blocks that the boundaries `ipa` and `end` cut.
fn split_ends(t: &mut Table, ipa: u64, end: u64) -> Result<(), Errno> {
    for (at, edge) in [(ipa, ipa), (end - PAGE_SIZE, end)] {
        if t.query(va(at)).is_ok_and(|(_, _, leaf)| leaf > PAGE_SIZE as usize && edge % leaf as u64 != 0) {
            t.split_huge_page(va(at)).map_err(errno)?;
        }
    }
    Ok(())
}

fn live(t: &mut Option<Table>) -> &mut Table {
    t.as_mut().expect("the executor only calls live VMs")
}

impl PageTableGeneric {
    fn dispatch(&mut self, v: usize, op: &Op, stub: Pa) -> Result<(), Errno> {
        match *op {
            Op::CreateVm { .. } => {
                let mut t = Table::new(Frames).map_err(errno)?;
                let root = Pa(t.root_paddr().as_usize() as u64);
                services(|s| s.new_root(root));
                // The guest stub, read-only and executable, before the VM can run.
                if let Err(e) =
                    t.map_page(va(STUB_IPA.0), pa(stub.0), PAGE_SIZE as usize, flags(Prot::RAM_RO))
                {
                    drop(t);
                    return Err(errno(e));
                }
                self.vms[v] = Some(t);
                Ok(())
            }
            Op::DestroyVm { .. } => {
                // axvm clears the address space, then drops the table, which frees the
                // table frames; before the VMID is given out again nothing of it may stay
                // cached.
                if let Some(mut t) = self.vms[v].take() {
                    let r = t.unmap(va(0), 1 << 39).map_err(errno);
                    drop(t);
                    services(|s| {
                        s.tlbi(Tlbi::Vmalls12e1(vmid(v)));
                        s.dsb();
                    });
                    r?;
                }
                Ok(())
            }
            // The crate refuses an empty map or unmap (`InvalidSize`) and accepts an empty
            // protect at any address: an op of no page is judged by its arguments alone.
            Op::MapRange { ipa, pa: frame, size: 0, .. } => empty(ipa, frame),
            Op::UnmapRange { ipa, size: 0, .. } | Op::ProtectRange { ipa, size: 0, .. } => empty(ipa, 0),
            Op::MapRange { pa: frame, size, .. }
                if self.workarounds.has(CHECK_OUTPUT_ADDRESS)
                    && frame.checked_add(size).is_none_or(|e| e > 1 << 48) =>
            {
                Err(Errno::OutOfRange)
            }
            Op::MapRange { ipa, pa: frame, size, prot, .. } => {
                let bbm = self.workarounds.has(REMAP_WITH_BBM);
                let t = live(&mut self.vms[v]);
                let r = t.map_linear_pages(va(ipa), pa(frame), size as usize, flags(prot), true);
                match r {
                    // A mapped page changed as axvm does, or with the crate's own call for it.
                    Err(PagingError::MappingConflict { .. }) if size == PAGE_SIZE && bbm => {
                        if t.query(va(ipa)).is_ok_and(|(_, _, leaf)| leaf > PAGE_SIZE as usize) {
                            t.split_huge_page(va(ipa)).map_err(errno)?;
                        }
                        top_up(MAKE_TABLES)?;
                        t.unmap_page(va(ipa)).map_err(errno)?;
                        // The crate clears the emptied tables' parents without a flush: one
                        // more before the new tables take their place.
                        S2::flush(None);
                        t.map_page(va(ipa), pa(frame), PAGE_SIZE as usize, flags(prot)).map_err(errno)
                    }
                    Err(PagingError::MappingConflict { .. }) if size == PAGE_SIZE => {
                        t.remap_page(va(ipa), pa(frame), flags(prot)).map(|_| ()).map_err(errno)
                    }
                    r => r.map_err(errno),
                }
            }
            Op::UnmapRange { ipa, size, .. } if self.workarounds.has(SPLIT_UNMAPS) => {
                split_unmap(live(&mut self.vms[v]), ipa, size)
            }
            Op::UnmapRange { ipa, size, .. } => {
                live(&mut self.vms[v]).unmap(va(ipa), size as usize).map_err(errno)
            }
            Op::ProtectRange { ipa, size, .. }
                if self.workarounds.has(CHECK_PROTECT_RANGE)
                    && (!ipa.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE)) =>
            {
                Err(Errno::Misaligned)
            }
            Op::ProtectRange { ipa, size, .. }
                if self.workarounds.has(CHECK_PROTECT_RANGE)
                    && ipa.checked_add(size).is_none_or(|e| e > INFO.geometry.ipa_limit()) =>
            {
                Err(Errno::OutOfRange)
            }
            Op::ProtectRange { ipa, size, prot, .. } => {
                let t = live(&mut self.vms[v]);
                if self.workarounds.has(MEMORY_TYPE_WITH_BBM) {
                    change_memory_type(t, ipa, size, prot)?;
                }
                t.protect_region(va(ipa), size as usize, flags(prot)).map_err(errno)
            }
            // Guest accesses and fault injection are the harness's; the rest is not offered.
            _ => Ok(()),
        }
    }
}
