//! The seam between the harness and the stage-2 code under test. A target adapter is a
//! small crate under `targets/` that turns the harness's ops into calls on one
//! implementation ([`Target::call`]) and says what it offers ([`TargetInfo`]). It gets its
//! memory, references and maintenance from the harness through [`Services`], so the
//! oracles see every effect; it never sees the oracles.

use crate::arch::tlb::Tlbi;
use crate::arch::{Desc, Geometry, MemAttrs, Pa, Vttbr};
use crate::event::Warning;
use crate::layout::Layout;
use crate::op::{Config, Op, OpSet};
use crate::result::Errno;
use alloc::vec::Vec;
use core::ptr::NonNull;

/// How the harness observes a target's table memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observe {
    /// Every descriptor write, reference and maintenance operation goes through
    /// [`Services`]: every write is an ordered event.
    Instrumented,
    /// The target writes descriptors through pointers into pages it got from
    /// [`Services::alloc_pages`] ([`Services::table_memory`]); the harness diffs those pages
    /// at every maintenance operation and at the end of each op, so writes are ordered
    /// against maintenance but not among themselves.
    MemoryOwning,
}

/// What a target is and offers.
#[derive(Debug)]
pub struct TargetInfo {
    /// The name `.s2` headers and `--target` use.
    pub name: &'static str,
    /// One line: what code this is.
    pub summary: &'static str,
    /// The stage-2 geometry its tables have (profile, IPA size, start level, root).
    pub geometry: Geometry,
    /// The ops it offers.
    pub ops: OpSet,
    /// Its defect switches: (name, one line), bit i of [`crate::op::Defects`] is entry i.
    pub defects: &'static [(&'static str, &'static str)],
    /// Its workarounds of filed findings: (name, one line). Each avoids one finding at its
    /// cause, the way a careful caller would, so that campaigns (which turn them all on)
    /// keep finding new bugs; `.s2` files turn them on with a `workarounds` line.
    pub workarounds: &'static [(&'static str, &'static str)],
    /// The target's contract needs a coherent stage-2 walker (VTCR_EL2 makes walks inner
    /// write-back cacheable, as Linux arm64 programs it): it cleans nothing, so `walker
    /// non-coherent` is refused by the parser and never chosen by the byte decoder.
    pub coherent_walker_only: bool,
    /// How its memory is observed.
    pub observe: Observe,
    /// The target may fill a table page before it links it (as Linux's stage-2 block split
    /// prepares the new table): its entries are checked when the page is linked. Otherwise
    /// a descriptor written into a page that is not a linked table is malformed. (A
    /// memory-owning target's unlinked pages are never compared, so this is moot for it.)
    pub prepares_tables: bool,
    /// Table pages carry one reference per valid entry plus their own, and tables are
    /// linked empty.
    pub refcounted: bool,
    /// Emptied tables are unlinked and freed at once, so the level of a translation fault
    /// is predictable.
    pub frees_empty_tables: bool,
    /// Block descriptors may be written.
    pub blocks: bool,
    /// The memory attributes its leaves carry (Linux's: [`MemAttrs::LINUX`]).
    pub attrs: MemAttrs,
    /// The smallest and largest VMID width it supports.
    pub vmid_bits: (u8, u8),
    /// DSBs reach the harness as [`Services::dsb`] (false where the target issues its own
    /// barriers the harness cannot see).
    pub barriers_observed: bool,
    /// Each [`Services::tlbi`] it issues is complete on return (its routine ends with DSB).
    pub tlbi_completes: bool,
}

impl TargetInfo {
    /// True when the target offers `op`.
    pub const fn offers(&self, op: &Op) -> bool {
        self.ops.has(op.kind())
    }
    /// Looks a defect switch up by name.
    pub fn defect(&self, name: &str) -> Option<usize> {
        self.defects.iter().position(|(n, _)| *n == name)
    }
    /// Looks a workaround up by name.
    pub fn workaround(&self, name: &str) -> Option<usize> {
        self.workarounds.iter().position(|(n, _)| *n == name)
    }
    /// Every workaround, as a set (bit j is workaround j).
    pub const fn all_workarounds(&self) -> crate::op::Defects {
        crate::op::Defects::first(self.workarounds.len())
    }
}

/// What a target may ask of the harness: the page pool, table memory, references and
/// maintenance. The harness's platform layer implements it with every oracle watching; the
/// bare baseline implements it with nothing but memory.
pub trait Services {
    /// The memory layout (pool, guest and device windows, the guest stub's frame).
    fn layout(&self) -> Layout;
    /// Declares the pages just allocated at `root` the root table of the VM being created,
    /// before anything is written into them.
    fn new_root(&mut self, root: Pa);
    /// Allocates 2^`order` contiguous, naturally aligned, zeroed pages; the first page gets
    /// a reference count of 1, the others 0. `None` when memory is exhausted.
    fn alloc_pages(&mut self, order: u32) -> Option<Pa>;
    /// Returns 2^`order` pages starting at `pa`.
    fn free_pages(&mut self, pa: Pa, order: u32);
    /// Takes a reference on the page holding `pa`.
    fn get_page(&mut self, pa: Pa);
    /// Drops a reference on the page holding `pa` (at zero the page is freed, as in Linux).
    fn put_page(&mut self, pa: Pa);
    /// The reference count of the page holding `pa`.
    fn page_count(&mut self, pa: Pa) -> u32;
    /// Reads the descriptor at `pa`.
    fn read_desc(&mut self, pa: Pa) -> Desc;
    /// Writes the descriptor at `pa` (a single-copy-atomic 64-bit store).
    fn write_desc(&mut self, pa: Pa, desc: Desc);
    /// Cleans `[pa, pa + len)` to the point of coherency, then DSB (as Linux's
    /// `flush_pmd_entry` and `clean_dcache_area` end).
    fn clean_dcache(&mut self, pa: Pa, len: u64);
    /// Issues a TLB invalidation.
    fn tlbi(&mut self, op: Tlbi);
    /// Records a TLB invalidation the target has just executed itself, as an instruction
    /// the harness could not intercept (its own code at EL2 on a hardware image): judged
    /// like [`Services::tlbi`], and not executed again. Under qemu-user the harness traps
    /// such instructions and calls [`Services::tlbi`] instead.
    fn tlbi_executed(&mut self, op: Tlbi) {
        self.tlbi(op);
    }
    /// A data synchronization barrier.
    fn dsb(&mut self);
    /// Reports a `WARN_ON`.
    fn warn(&mut self, warning: Warning);
    /// The memory of the pool page holding `pa`, for a memory-owning target to write its
    /// tables into; `None` outside the pool. The adapter asks for it every time the target
    /// turns a table's address into a pointer (as `aarch64-paging`'s
    /// `Translation::physical_to_virtual` does at each step of a walk): the harness compares
    /// only those pages, and the roots, with what it last saw, and every page at the end of
    /// a sequence. A target that keeps a pointer to a non-root table across ops has its
    /// writes through it seen at the end of the sequence, not of the op.
    fn table_memory(&mut self, pa: Pa) -> Option<NonNull<u64>>;
}

/// A target adapter.
pub trait Target {
    /// What it is and offers.
    fn info(&self) -> &'static TargetInfo;
    /// Forgets every VM: a new sequence under `config`.
    fn reset(&mut self, config: &Config);
    /// Runs one op the target offers. `CreateVm` allocates the VM's tables and maps the
    /// guest stub page (`layout().stub_frame()` at [`crate::layout::STUB_IPA`], read-only
    /// and executable) with the target's own API; on failure it leaves nothing allocated.
    /// Panics are the target's `BUG_ON`s: the harness records them and ends the sequence.
    fn call<S: Services>(&mut self, s: &mut S, op: &Op) -> Result<(), Errno>;
    /// The root of `vm`'s tables, while it has one.
    fn root(&self, vm: u8) -> Option<Pa>;
    /// The VTTBR `vm` runs with now (after `update_vmid` / `enter` for targets with a VMID
    /// allocator; fixed otherwise).
    fn vttbr(&self, vm: u8) -> Vttbr;
    /// The generation of `vm`'s VMID, for targets whose allocator has generations (a new
    /// assignment may give the same number in a new generation); 0 otherwise.
    fn vmid_generation(&self, vm: u8) -> u64 {
        let _ = vm;
        0
    }
    /// The memslots of `vm` as the target holds them: (id, gpa, pages, hva), in id order.
    fn memslots(&self, vm: u8, out: &mut Vec<(u16, u64, u64, u64)>) {
        let _ = (vm, out);
    }
    /// The pages in `vm`'s vCPU memory cache.
    fn cache(&self, vm: u8, out: &mut Vec<Pa>) {
        let _ = (vm, out);
    }

    /// How many pages `vm`'s vCPU memory cache holds.
    fn cache_len(&self, vm: u8) -> usize {
        let mut v = Vec::new();
        self.cache(vm, &mut v);
        v.len()
    }
}
