//! The reference model's comparison with the tables: each IPA range is translated by the
//! harness's walker, leaf by leaf, and every leaf must carry the frame and the exact bit
//! pattern ([`crate::arch::Prot::pattern`]) the model's mapping requires. Cost follows the
//! leaves of the range, so a 1 GiB block is one step.

use super::model::{Run, VmModel};
use crate::arch::walk::{self, Fault, FaultKind, Leaf};
use crate::arch::{level_size, Geometry, Ipa, Pa, PAGE_SIZE};
use crate::violation::Mapping;
use crate::violation::{Detail, Found};

/// How the comparison judges what it cannot see in the model.
#[derive(Clone, Copy, Debug)]
pub struct Judge {
    /// The tables' geometry.
    pub geometry: Geometry,
    /// The target frees emptied tables, so a translation fault must come at the level
    /// [`VmModel::fault_level`] gives.
    pub exact_fault_levels: bool,
    /// The target may use blocks.
    pub blocks: bool,
}

/// Compares `[start, end)` of `model` with the tables under `root` (read with `read`).
/// Returns the first disagreement.
pub fn range(
    j: &Judge,
    read: &mut impl FnMut(Pa) -> u64,
    root: Pa,
    vm: u8,
    model: &VmModel,
    start: u64,
    end: u64,
) -> Option<Detail> {
    let mut a = start & !(PAGE_SIZE - 1);
    let end = end.min(j.geometry.ipa_limit());
    let mut cursor = None;
    let mut run = None;
    while a < end {
        let found = walk::translate_from(&j.geometry, read, root, Ipa(a), &mut cursor);
        let (size, bad) = match found {
            Ok(leaf) => (level_size(leaf.level), leaf_disagrees(j, model, a, &leaf, &mut run)),
            Err(f) => (level_size(f.level), fault_disagrees(j, model, a, &f)),
        };
        if let Some(ipa) = bad {
            let found = match walk::translate(&j.geometry, read, root, Ipa(ipa)) {
                Ok(leaf) => Found::Leaf(leaf.desc, leaf.level),
                Err(f) => Found::Fault(f),
            };
            let expected = model.get(ipa);
            let fault_level =
                (expected.is_none() && j.exact_fault_levels).then(|| model.fault_level(&j.geometry, ipa));
            return Some(Detail::ModelMismatch { vm, ipa: Ipa(ipa), expected, fault_level, found });
        }
        a = (a & !(size - 1)) + size;
    }
    None
}

/// The model's run holding `page`, from `cache` when it still holds it (a range compare asks
/// for consecutive pages, mostly of one run).
fn mapping(model: &VmModel, page: u64, cache: &mut Option<(u64, Run)>) -> Option<Mapping> {
    match *cache {
        Some((start, r)) if page >= start && page < r.end => {}
        _ => {
            let (&start, &r) = model.map.range(..=page).next_back()?;
            *cache = Some((start, r));
        }
    }
    let (start, r) = (*cache)?;
    (page < r.end).then(|| Mapping { pa: r.pa.add(page - start), prot: r.prot })
}

/// The first page of the leaf's region (from `a` on) where the model disagrees with it.
fn leaf_disagrees(
    j: &Judge,
    model: &VmModel,
    a: u64,
    leaf: &Leaf,
    run: &mut Option<(u64, Run)>,
) -> Option<u64> {
    let size = level_size(leaf.level);
    let base = a & !(size - 1);
    if leaf.level < 3 && !j.blocks {
        return Some(a);
    }
    let mut page = a;
    while page < base + size {
        let Some(m) = mapping(model, page, run) else { return Some(page) };
        let oa = Pa(m.pa.0 - (page - base));
        let pattern = m.prot.pattern(j.geometry.profile, leaf.level, oa);
        if leaf.fields.oa != oa || !pattern.matches(leaf.desc) {
            return Some(page);
        }
        if leaf.level == 3 {
            return None;
        }
        // The rest of the model's run agrees if its frames continue and its protection holds.
        let run = model.map.range(..=page).next_back().map(|(_, r)| *r).expect("mapped");
        page = run.end.min(base + size);
    }
    None
}

/// The first page of the faulting entry's region (from `a` on) that the model maps, or `a`
/// itself when the fault is of the wrong class or level.
fn fault_disagrees(j: &Judge, model: &VmModel, a: u64, f: &Fault) -> Option<u64> {
    if f.kind != FaultKind::Translation {
        return Some(a); // the model never expects access-flag or permission faults on a walk
    }
    let size = level_size(f.level);
    let region_end = (a & !(size - 1)) + size;
    if let Some(m) = model.first_mapped(a, region_end) {
        return Some(m);
    }
    (j.exact_fault_levels && f.level != model.fault_level(&j.geometry, a)).then_some(a)
}
