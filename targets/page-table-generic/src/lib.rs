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
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(all(target_arch = "aarch64", feature = "std"))]
mod adapter;
#[cfg(all(target_arch = "aarch64", feature = "std"))]
pub use adapter::PageTableGeneric;

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
    workarounds: &[],
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
