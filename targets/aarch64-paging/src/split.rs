//! The `split-blocks-with-bbm` workaround. `aarch64-paging` splits a live block into a table
//! in one write, without break-before-make and (when the updater changes nothing) without
//! any TLB invalidation; and its live-`map_range` check masks the new output address to the
//! block size, so a page inside a live block can be remapped to another frame of the same
//! block. A careful caller therefore never asks the crate to change part of a live block:
//! it splits the block first, with break-before-make, through the crate's own API:
//!
//! 1. break: `modify_range` over the whole block clears VALID (the crate writes the invalid
//!    entry and invalidates the block's IPA);
//! 2. make: `map_range` of the block's first next-level granule links a new table into the
//!    invalid entry, and a second `map_range` maps the rest, one level down.
//!
//! A 1 GiB block becomes 2 MiB blocks, one of which may still be partly covered and is split
//! in turn. The crate's own checks then see pages (or whole blocks), where they are right.

use crate::regime::ObservedStage2;
use crate::translation::Pool;
use crate::{attributes, errno, region};
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes as S2};
use aarch64_paging::paging::{Constraints, MemoryRegion};
use aarch64_paging::Mapping;
use harness_core::op::Op;
use harness_core::result::Errno;

/// What an op asks of the blocks it partly covers.
#[derive(Clone, Copy, Debug)]
pub enum Change {
    /// `map_range` to frames from `pa` with `flags`: a block that already maps exactly that
    /// is left whole (the crate leaves it alone too); any other is split, also when the
    /// range covers it whole, since the crate's check masks the new address to the block
    /// size and would rewrite a block whose frames move by less than that as a table, live.
    Map {
        /// The range's first IPA.
        ipa: u64,
        /// Its first frame.
        pa: u64,
        /// The attributes asked for.
        flags: S2,
    },
    /// `unmap_range` or `protect_range`: the crate's `modify_range` splits every partly
    /// covered block, whatever the updater then does.
    Modify,
}

/// The range an op changes and how, for the ops that may split a block.
pub fn change_of(op: &Op) -> Option<(u64, u64, Change)> {
    match *op {
        Op::MapRange { ipa, pa, size, prot, .. } => {
            Some((ipa, size, Change::Map { ipa, pa, flags: attributes(prot) }))
        }
        Op::UnmapRange { ipa, size, .. } | Op::ProtectRange { ipa, size, .. } => {
            Some((ipa, size, Change::Modify))
        }
        _ => None,
    }
}

/// Bytes an entry at `level` maps (4 KiB granule).
const fn granule(level: usize) -> u64 {
    4096 << (9 * (3 - level))
}

/// Splits, with break-before-make, every live block that `change` would alter and the crate
/// would split: for `map_range` every block it would not leave as it is, for `modify_range`
/// every block `[ipa, ipa + size)` covers only in part. A range the crate would refuse is
/// left to the crate.
pub fn live_blocks(
    m: &mut Mapping<Pool, ObservedStage2>,
    ipa: u64,
    size: u64,
    change: Change,
) -> Result<(), Errno> {
    // An empty range changes no block (and is never built as a region here).
    if size == 0 {
        return Ok(());
    }
    let Ok(range) = region(ipa, size) else { return Ok(()) };
    loop {
        let mut found = None;
        let walked = m.walk_range(&range, &mut |mr: &MemoryRegion, d, level| {
            let block = level < 3 && d.is_valid() && !d.is_table_or_page();
            if found.is_some() || !block {
                return Ok(());
            }
            let g = granule(level);
            let start = mr.start().0 as u64 & !(g - 1);
            let oa = d.output_address().0 as u64;
            let split = match change {
                Change::Map { ipa, pa, flags } => {
                    let at = mr.start().0 as u64;
                    d.flags() != flags || oa + (at - start) != pa.wrapping_add(at - ipa)
                }
                Change::Modify => mr.len() as u64 != g,
            };
            if split {
                found = Some((start, level, oa, d.flags()));
            }
            Ok(())
        });
        let (Ok(()), Some((start, level, oa, flags))) = (walked, found) else { return Ok(()) };
        split(m, start, level, oa, flags)?;
    }
}

/// Breaks the block at `start` (`level`, output `oa`, attributes `flags`) and makes it again
/// as next-level entries.
fn split(
    m: &mut Mapping<Pool, ObservedStage2>,
    start: u64,
    level: usize,
    oa: u64,
    flags: S2,
) -> Result<(), Errno> {
    let (g, sub) = (granule(level), granule(level + 1));
    let whole = MemoryRegion::new(start as usize, (start + g) as usize);
    m.modify_range(&whole, &|_, d| {
        if d.is_table() {
            return Ok(());
        }
        d.modify_flags(S2::empty(), S2::VALID)
    })
    .map_err(errno)?;
    // The break is complete (combined entries too, with `tlbi-vmalle1`) before the make.
    crate::context::after_call();
    let first = MemoryRegion::new(start as usize, (start + sub) as usize);
    m.map_range(&first, PhysicalAddress(oa as usize), flags, Constraints::empty()).map_err(errno)?;
    let rest = MemoryRegion::new((start + sub) as usize, (start + g) as usize);
    m.map_range(&rest, PhysicalAddress((oa + sub) as usize), flags, Constraints::empty()).map_err(errno)
}
