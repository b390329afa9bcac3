//! The reference model's comparison with the tables: each IPA range is translated by the
//! harness's walker, leaf by leaf, and every leaf must carry the frame and the exact bit
//! pattern ([`crate::arch::Prot::pattern`]) the model's mapping requires. Cost follows the
//! mappings of the range, not its pages: a 1 GiB block is one step, and so is a run of
//! entries of one table that continue an agreeing leaf (same bits, output address advancing)
//! while the model's run goes on, or a run of invalid entries where the model maps nothing.

use super::model::{Run, VmModel};
use crate::arch::walk::{self, Fault, FaultKind, Leaf};
use crate::arch::{level_size, Geometry, Ipa, MemAttrs, Pa, PAGE_SIZE};
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
    /// The memory attributes its leaves carry.
    pub attrs: MemAttrs,
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
        let (size, bad) = match &found {
            Ok(leaf) => (level_size(leaf.level), leaf_disagrees(j, model, a, leaf, &mut run)),
            Err(f) => (level_size(f.level), fault_disagrees(j, model, a, f)),
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
        let next = (a & !(size - 1)) + size;
        let level = found.as_ref().map_or_else(|f| f.level, |l| l.level);
        let table = walk::table_of(&j.geometry, root, &cursor, Ipa(a), level).filter(|_| next < end);
        a = match (found, table) {
            (_, None) => next,
            // Entries that continue an agreeing leaf agree while the model's run goes on.
            (Ok(leaf), Some(t)) => match model.map.range(..=a).next_back() {
                Some((_, r)) if r.end & !(size - 1) > next => {
                    let to = walk::run_end(&j.geometry, read, t, Ipa(a), level, Some(leaf.desc), end);
                    next.max(to.min(r.end & !(size - 1)))
                }
                _ => next,
            },
            // Invalid entries that follow an agreeing one agree where the model maps nothing
            // and expects the same fault level (their coarser regions are the same).
            (Err(f), Some(t)) => {
                let to = walk::run_end(&j.geometry, read, t, Ipa(a), level, None, end);
                let level_ok = !j.exact_fault_levels || model.fault_level(&j.geometry, next) == f.level;
                if to > next && level_ok && model.first_mapped(next, to).is_none() {
                    to
                } else {
                    next
                }
            }
        };
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
        let pattern = m.prot.pattern_with(j.attrs, j.geometry.profile, leaf.level, oa);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Profile, Prot};
    use alloc::collections::BTreeMap;

    const ROOT: u64 = 0x1000_0000;
    const L2: u64 = 0x1000_2000;
    const L3: u64 = 0x1000_3000;
    const FRAME: u64 = 0x4400_0000;

    /// Level 1 entry 0 -> level 2 table, its entry 0 -> level 3 table, whose first `pages`
    /// entries map `FRAME` onwards read-write (written from the Arm ARM's bit layout: page,
    /// AF, SH inner, S2AP rw, MemAttr normal write-back).
    fn tables(pages: u64) -> BTreeMap<u64, u64> {
        let mut m = BTreeMap::new();
        m.insert(ROOT, L2 | 0b11);
        m.insert(L2, L3 | 0b11);
        for i in 0..pages {
            m.insert(
                L3 + i * 8,
                (FRAME + i * PAGE_SIZE) | 1 << 10 | 0b11 << 8 | 0b11 << 6 | 0b1111 << 2 | 0b11,
            );
        }
        m
    }

    fn judge() -> Judge {
        let geometry = crate::arch::Geometry::aarch64(25, 1).unwrap(); // 39-bit IPA, level 1 root
        assert_eq!(geometry.profile, Profile::Aarch64);
        Judge { geometry, exact_fault_levels: false, blocks: true, attrs: MemAttrs::LINUX }
    }

    fn compare(m: &BTreeMap<u64, u64>, model: &VmModel, end: u64) -> Option<u64> {
        let mut read = |pa: Pa| m.get(&pa.0).copied().unwrap_or(0);
        match range(&judge(), &mut read, Pa(ROOT), 0, model, 0, end)? {
            Detail::ModelMismatch { ipa, .. } => Some(ipa.0),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn runs_of_agreeing_entries_are_judged_at_once_and_exactly() {
        let mut model = VmModel::default();
        model.set(0, 64 * PAGE_SIZE, Pa(FRAME), Prot::RAM_RW);
        let good = tables(64);
        assert_eq!(compare(&good, &model, 1 << 30), None);
        // A wrong frame, a wrong permission and a missing page in the middle of the run.
        let mut frame = good.clone();
        *frame.get_mut(&(L3 + 40 * 8)).unwrap() += PAGE_SIZE;
        assert_eq!(compare(&frame, &model, 1 << 30), Some(40 * PAGE_SIZE));
        let mut ro = good.clone();
        *ro.get_mut(&(L3 + 17 * 8)).unwrap() &= !(1 << 7);
        assert_eq!(compare(&ro, &model, 1 << 30), Some(17 * PAGE_SIZE));
        let mut hole = good.clone();
        hole.remove(&(L3 + 63 * 8));
        assert_eq!(compare(&hole, &model, 1 << 30), Some(63 * PAGE_SIZE));
        // The model's run ends before the tables' run: the extra leaf is found.
        let mut short = VmModel::default();
        short.set(0, 50 * PAGE_SIZE, Pa(FRAME), Prot::RAM_RW);
        assert_eq!(compare(&good, &short, 1 << 30), Some(50 * PAGE_SIZE));
        // A model page inside a run of invalid entries is found; past `end` it is not looked at.
        let mut far = model.clone();
        far.set(300 * PAGE_SIZE, 301 * PAGE_SIZE, Pa(FRAME), Prot::RAM_RW);
        assert_eq!(compare(&good, &far, 1 << 30), Some(300 * PAGE_SIZE));
        assert_eq!(compare(&good, &far, 300 * PAGE_SIZE), None);
        // Invalid level-2 entries: a page the model maps 5 MiB in is found.
        let mut l2 = model.clone();
        l2.set(5 << 20, (5 << 20) + PAGE_SIZE, Pa(FRAME), Prot::RAM_RW);
        assert_eq!(compare(&good, &l2, 1 << 30), Some(5 << 20));
    }
}
