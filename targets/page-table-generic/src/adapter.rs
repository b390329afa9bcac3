//! The adapter: one `PageTable<S2, Frames>` per VM. The crate's hooks (`TableMeta::flush`
//! and `FrameAllocator`) are static or cloned values without context, so they reach the
//! harness's services through a thread-local slot set around every call.

use crate::INFO;
use ax_cpu::paging::{MappingFlags, Stage2Pte};
use core::cell::Cell;
use core::ptr::NonNull;
use harness_core::arch::tlb::Tlbi;
use harness_core::arch::{Mem, Pa, Prot, Vmid, Vttbr, PAGE_SIZE};
use harness_core::layout::STUB_IPA;
use harness_core::op::{Config, Op, MAX_VMS};
use harness_core::result::Errno;
use harness_core::target::{Services, Target, TargetInfo};
use page_table_generic::{FrameAllocator, PageTable, PagingError, PhysAddr, TableMeta, VirtAddr};

std::thread_local! {
    /// The services of the call running on this thread.
    static SLOT: Cell<Option<NonNull<dyn Services>>> = const { Cell::new(None) };
}

/// Runs `f` on the current services, if a call is in progress and not unwinding.
fn services<R>(f: impl FnOnce(&mut dyn Services) -> R) -> Option<R> {
    if std::thread::panicking() {
        return None;
    }
    let s = SLOT.with(Cell::get)?;
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
        // isb`); the harness traps the TLBI under qemu-user and records it. Outside a call
        // (a table being forgotten) there is nothing to invalidate for.
        if SLOT.with(Cell::get).is_some() && !std::thread::panicking() {
            // Safe because this runs at EL0 under qemu-user, where the harness's SIGILL
            // handler steps over the TLBI; barriers execute normally.
            unsafe { ax_cpu::virtualization::invalidate_guest_translations_inner_shareable() };
        }
    }
}

/// Frames from the harness's page pool.
#[derive(Clone, Copy, Default)]
pub struct Frames;

impl FrameAllocator for Frames {
    fn alloc_frame(&self) -> Option<PhysAddr> {
        let pa = services(|s| s.alloc_pages(0))??;
        Some(PhysAddr::from_usize(pa.0 as usize))
    }

    fn dealloc_frame(&self, frame: PhysAddr) {
        services(|s| s.free_pages(Pa(frame.as_usize() as u64), 0));
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

    fn reset(&mut self, _: &Config) {
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
                SLOT.with(|c| c.set(None));
            }
        }
        let ptr: NonNull<dyn Services + '_> = NonNull::from(s as &mut dyn Services);
        // Safe because the slot is cleared before `s`'s borrow ends (the guard runs on return
        // and on unwind), so the erased lifetime is never outlived.
        let ptr: NonNull<dyn Services> = unsafe { core::mem::transmute(ptr) };
        SLOT.with(|c| c.set(Some(ptr)));
        let _clear = Clear;
        let v = op.vm().map_or(0, usize::from);
        let stub = s.layout().stub_frame();
        self.dispatch(v, op, stub)
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
            Op::MapRange { ipa, pa: frame, size, prot, .. } => {
                let t = live(&mut self.vms[v]);
                let r = t.map_linear_pages(va(ipa), pa(frame), size as usize, flags(prot), true);
                match r {
                    // A mapped page changed with the crate's own call for it.
                    Err(PagingError::MappingConflict { .. }) if size == PAGE_SIZE => {
                        t.remap_page(va(ipa), pa(frame), flags(prot)).map(|_| ()).map_err(errno)
                    }
                    r => r.map_err(errno),
                }
            }
            Op::UnmapRange { ipa, size, .. } => {
                live(&mut self.vms[v]).unmap(va(ipa), size as usize).map_err(errno)
            }
            Op::ProtectRange { ipa, size, prot, .. } => {
                live(&mut self.vms[v]).protect_region(va(ipa), size as usize, flags(prot)).map_err(errno)
            }
            // Guest accesses and fault injection are the harness's; the rest is not offered.
            _ => Ok(()),
        }
    }
}
