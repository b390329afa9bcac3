//! Target `page-table-generic`: axvisor's stage-2 stack, unmodified from crates.io:
//! `page-table-generic` 0.9.1's walker (`PageTable<M, A>`) with `ax-cpu` 0.10.3's
//! `paging::Stage2Pte` descriptor, driven through their public API. `Stage2Pte` exists only
//! when building for AArch64, so the adapter ([`PageTableGeneric`]) does too: it runs
//! natively under qemu-user, where the crate's TLB maintenance, executed as instructions,
//! is trapped by the harness (`harness::native::trap`). Elsewhere this crate is [`INFO`].
//!
//! What the adapter decides, because the crates do not say:
//! - **Configuration.** axvm 0.8.5's private `A64HVPagingMetaDataL3`, re-stated from its
//!   reading: 4 KiB pages, three levels of 9 bits from a level-1 root (a 39-bit IPA,
//!   VTCR_EL2.T0SZ = 25, SL0 = 1), blocks up to 2 MiB, strict address width. Its `flush`
//!   hook does what axvm's does whatever the address: `dsb ishst; tlbi alle1is; dsb ish;
//!   isb` (`ax_cpu::virtualization::invalidate_guest_translations_inner_shareable`).
//! - **Tables** are harness pool pages, through `FrameAllocator` (one frame at a time; the
//!   crate zeroes new frames itself).
//! - **VMIDs.** axvm runs every VM with VMID 0 and invalidates all VMIDs at each flush; the
//!   adapter gives VM `n` the VMID `n + 1` (the harness programs VTTBR for guest runs), which
//!   changes nothing the crate does.
//! - **Ops.** `map_range` is `map_linear_pages` with blocks allowed (axvm's `map_linear`);
//!   a one-page `map_range` over a mapped page is `remap_page`, the crate's way to change a
//!   mapping (any other map over live entries is refused by the crate, `MappingConflict`);
//!   `unmap_range` is `unmap` (axvm's `unmap_region`); `protect_range` is
//!   `protect_region`, which splits blocks at the range's ends and skips holes.
//! - **Memory attributes** are `Stage2Pte`'s: normal memory write-back, Outer Shareable;
//!   device memory Device-nGnRnE ([`INFO`]`.attrs`).
//! - **An op of no page** is not passed to the crate, which refuses an empty map or unmap
//!   (`InvalidSize`) and accepts an empty protect anywhere: it is refused for a misaligned
//!   address or one past the IPA space, and otherwise succeeds, as for the other targets.
//! - **Workarounds** of the crates' findings ([`INFO`]`.workarounds`), each what a careful
//!   caller would do; campaigns turn them on, regression files leave them off.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(target_arch = "aarch64")]
mod adapter;
#[cfg(target_arch = "aarch64")]
pub use adapter::PageTableGeneric;

/// Index of the `defer-table-frees` workaround.
pub const DEFER_TABLE_FREES: usize = 0;
/// Index of the `remap-with-bbm` workaround.
pub const REMAP_WITH_BBM: usize = 1;
/// Index of the `split-unmaps` workaround.
pub const SPLIT_UNMAPS: usize = 2;
/// Index of the `check-output-address` workaround.
pub const CHECK_OUTPUT_ADDRESS: usize = 3;
/// Index of the `change-memory-type-with-bbm` workaround.
pub const MEMORY_TYPE_WITH_BBM: usize = 4;
/// Index of the `check-protect-range` workaround.
pub const CHECK_PROTECT_RANGE: usize = 5;

use harness_core::arch::Geometry;
use harness_core::op::OpSet;
use harness_core::target::{Observe, TargetInfo};

/// What this target is and offers.
pub static INFO: TargetInfo = TargetInfo {
    name: "page-table-generic",
    summary: "page-table-generic 0.9.1 with ax-cpu 0.10.3's Stage2Pte (axvisor's stage 2, crates.io); AArch64 only: runs under qemu-user",
    geometry: match Geometry::aarch64(25, 1) {
        Ok(g) => g,
        Err(_) => panic!("T0SZ 25, SL0 1 is a valid 4 KiB stage-2 geometry"),
    },
    ops: OpSet::of(&[
        "create_vm",
        "destroy_vm",
        "map_range",
        "unmap_range",
        "protect_range",
        "read",
        "write",
        "fail_alloc",
    ]),
    defects: &[],
    workarounds: &[
        (
            "defer-table-frees",
            "free the table frames the crate releases only after the call, behind one more flush (tlbi alle1is), as Linux frees stage-2 tables after their TLB invalidation: the crate frees a table right after clearing its parent, with no invalidation between (regressions/page-table-generic-table-freed-before-tlbi.s2)",
        ),
        (
            "remap-with-bbm",
            "change a mapped page as axvm's remap does (unmap_page, with its flush, then map_page; a block holding it is split first), with one more flush between the two, instead of remap_page, which overwrites the live leaf (regressions/page-table-generic-remap-without-bbm.s2)",
        ),
        (
            "split-unmaps",
            "before an unmap, split the blocks its ends cut (split_huge_page), and unmap in pieces that start at the range's start, its next 2 MiB boundary and each 1 GiB boundary: the crate clears a whole block for part of it, and from an unaligned start skips the head of the next region (regressions/page-table-generic-unmap-of-part-of-a-block.s2, -unmap-from-an-unaligned-start.s2)",
        ),
        (
            "check-output-address",
            "refuse a map_range whose frames reach past the 48-bit physical address space before calling the crate: Stage2Pte keeps only the low 48 bits of an output address and maps another frame (regressions/page-table-generic-output-address-truncated.s2)",
        ),
        (
            "change-memory-type-with-bbm",
            "before a protect_range, unmap (with its flush) and map again the leaves whose memory type it changes, with one more flush between: protect_page rewrites a live leaf's memory type in place, which needs break-before-make (regressions/page-table-generic-memory-type-changed-without-bbm.s2)",
        ),
        (
            "check-protect-range",
            "refuse a protect_range that is misaligned or reaches past the 39-bit IPA space before calling the crate, whose protect_region checks neither: it protects from a misaligned address, and steps a page at a time through the whole range (a range reaching 2^62 never returns) (regressions/page-table-generic-protect-range-unchecked.s2)",
        ),
    ],
    coherent_walker_only: true,
    observe: Observe::MemoryOwning,
    prepares_tables: true,
    refcounted: false,
    frees_empty_tables: false,
    blocks: true,
    attrs: harness_core::arch::MemAttrs { normal_sh: 0b10, device_memattr: 0b0000 },
    vmid_bits: (8, 16),
    barriers_observed: false,
    tlbi_completes: true,
};
