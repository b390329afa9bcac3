//! The architectural stage-2 walker for a [`Geometry`]: what a translation of an IPA gives,
//! fault class and level included (ARMv7 B3.6.6 / Arm ARM D8.2). The oracles, the simulator's
//! guest accesses and the table dump all use this one walker.

use super::addr::{Ipa, Pa};
use super::desc::{self, Desc, Entry};
use super::{level_size, Geometry};
use alloc::collections::BTreeSet;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Architectural fault class (DFSC / IFSC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// No valid descriptor (or a reserved encoding).
    Translation,
    /// A leaf with AF clear.
    AccessFlag,
    /// S2AP or XN forbids the access.
    Permission,
}

/// A stage-2 fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fault {
    /// Class.
    pub kind: FaultKind,
    /// Level of the descriptor that caused it.
    pub level: u8,
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The leaf descriptor (a page at level 3, or a block at level 1 or 2).
    pub desc: Desc,
    /// Its level.
    pub level: u8,
    /// The output address of the translated 4 KiB page.
    pub pa: Pa,
    /// Its fields.
    pub fields: desc::Leaf,
}

/// What an access needs from the leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// A data read, or a stage-1 walk read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch: readable and not execute-never.
    Execute,
}

/// Translates `ipa` through the tables under `root`, reading descriptors with `read`.
pub fn translate(g: &Geometry, read: &mut impl FnMut(Pa) -> u64, root: Pa, ipa: Ipa) -> Result<Leaf, Fault> {
    translate_from(g, read, root, ipa, &mut None)
}

/// The last table a walk ended in: (first IPA it translates, the table, its level). A walk
/// of a nearby IPA starts there, so walking a range costs a read per leaf, not per level.
pub type Cursor = Option<(u64, Pa, u8)>;

/// [`translate`], starting from `cursor`'s table when it translates `ipa`, and leaving the
/// table the walk ended in there. Only for tables that do not change between the walks.
pub fn translate_from(
    g: &Geometry,
    read: &mut impl FnMut(Pa) -> u64,
    root: Pa,
    ipa: Ipa,
    cursor: &mut Cursor,
) -> Result<Leaf, Fault> {
    let mut level = g.start_level;
    if ipa.0 >= g.ipa_limit() {
        return Err(Fault { kind: FaultKind::Translation, level });
    }
    let mut table = root;
    if let Some((base, t, l)) = *cursor {
        if l > g.start_level && ipa.0 >= base && ipa.0 - base < level_size(l - 1) {
            (table, level) = (t, l);
        }
    }
    loop {
        if level > g.start_level {
            *cursor = Some((ipa.0 & !(level_size(level - 1) - 1), table, level));
        }
        let desc = Desc(read(table.add(g.index(level, ipa) as u64 * 8)));
        let fault = |kind| Err(Fault { kind, level });
        match g.profile.decode(level, desc) {
            Entry::Invalid | Entry::Reserved => return fault(FaultKind::Translation),
            Entry::Table { next, .. } => {
                table = next;
                level += 1;
            }
            Entry::Leaf(fields) => {
                if !fields.af {
                    return fault(FaultKind::AccessFlag);
                }
                let offset = ipa.0 & (level_size(level) - 1) & !0xfff;
                return Ok(Leaf { desc, level, pa: Pa(fields.oa.0 | offset), fields });
            }
        }
    }
}

/// The table holding `ipa`'s entry at `level`, and the end of the IPAs it translates: the
/// root at the start level, else the table of `cursor` (left by a walk of `ipa`).
pub fn table_of(g: &Geometry, root: Pa, cursor: &Cursor, ipa: Ipa, level: u8) -> Option<(Pa, u64)> {
    match *cursor {
        _ if level == g.start_level => Some((root, g.ipa_limit())),
        Some((base, t, l)) if l == level && ipa.0 >= base && ipa.0 - base < level_size(l - 1) => {
            Some((t, base + level_size(l - 1)))
        }
        _ => None,
    }
}

/// The end of the run of entries after `ipa`'s entry at `level` in `table` ([`table_of`])
/// that go on like it: with `like` `None`, invalid or reserved entries; with a leaf
/// descriptor, leaves equal to it but for an output address that advances by the entry's
/// size. Stops at the table's end, and at the first entry from `end` on. A range comparison
/// judges such a run at once, not entry by entry.
pub fn run_end(
    g: &Geometry,
    read: &mut impl FnMut(Pa) -> u64,
    table: (Pa, u64),
    ipa: Ipa,
    level: u8,
    like: Option<Desc>,
    end: u64,
) -> u64 {
    let size = level_size(level);
    let mut next = (ipa.0 & !(size - 1)) + size;
    let oa = g.profile.oa_mask();
    let mut want = like.map(|d| d.0);
    while next < end.min(table.1) {
        let d = read(table.0.add(g.index(level, Ipa(next)) as u64 * 8));
        let same = match want.as_mut() {
            None => matches!(g.profile.decode(level, Desc(d)), Entry::Invalid | Entry::Reserved),
            Some(w) => {
                *w = w.wrapping_add(size);
                d == *w && (d ^ like.map_or(0, |l| l.0)) & !oa == 0
            }
        };
        if !same {
            break;
        }
        next += size;
    }
    next
}

/// Checks stage-2 permissions of a leaf for an access.
pub fn permit(leaf: &Leaf, need: Need) -> Result<(), Fault> {
    let f = &leaf.fields;
    let ok = match need {
        Need::Read => f.readable(),
        Need::Write => f.writable(),
        Need::Execute => f.readable() && !f.xn,
    };
    if ok {
        Ok(())
    } else {
        Err(Fault { kind: FaultKind::Permission, level: leaf.level })
    }
}

/// An entry met by [`visit`].
#[allow(missing_docs)] // variant docs name the fields
#[derive(Clone, Copy, Debug)]
pub enum Visit {
    /// A valid table descriptor at `level`, at `ptr`, covering IPAs from `ipa`.
    Table { level: u8, ptr: Pa, ipa: Ipa, desc: Desc },
    /// A valid leaf (page or block).
    Leaf { level: u8, ptr: Pa, ipa: Ipa, desc: Desc },
    /// A run of `count` invalid (or reserved) entries starting at `ptr`, folded.
    Empty { level: u8, ptr: Pa, ipa: Ipa, count: usize },
    /// A valid table descriptor pointing at a table already visited (not descended again).
    Alias { level: u8, ptr: Pa, ipa: Ipa, desc: Desc },
}

/// Visits every entry under `root` in address order, tables before their contents, folding
/// runs of invalid entries. Each table page is descended at most once, so corrupted tables
/// cannot make the walk explode; a second link to one is reported as [`Visit::Alias`].
pub fn visit(g: &Geometry, read: &mut impl FnMut(Pa) -> u64, root: Pa, f: &mut impl FnMut(Visit)) {
    let mut seen = BTreeSet::new();
    seen.insert(root.0);
    visit_table(g, read, root, g.start_level, 0, &mut seen, f);
}

fn visit_table(
    g: &Geometry,
    read: &mut impl FnMut(Pa) -> u64,
    table: Pa,
    level: u8,
    base: u64,
    seen: &mut BTreeSet<u64>,
    f: &mut impl FnMut(Visit),
) {
    let n = g.entries(level);
    let live = |d: Desc| !matches!(g.profile.decode(level, d), Entry::Invalid | Entry::Reserved);
    let mut i = 0;
    while i < n {
        let ptr = table.add(i as u64 * 8);
        let ipa = Ipa(base + i as u64 * level_size(level));
        let desc = Desc(read(ptr));
        if !live(desc) {
            let mut count = 1;
            while i + count < n && !live(Desc(read(table.add((i + count) as u64 * 8)))) {
                count += 1;
            }
            f(Visit::Empty { level, ptr, ipa, count });
            i += count;
            continue;
        }
        match g.profile.decode(level, desc) {
            Entry::Table { next, .. } if seen.insert(next.0) => {
                f(Visit::Table { level, ptr, ipa, desc });
                visit_table(g, read, next, level + 1, ipa.0, seen, f);
            }
            Entry::Table { .. } => f(Visit::Alias { level, ptr, ipa, desc }),
            _ => f(Visit::Leaf { level, ptr, ipa, desc }),
        }
        i += 1;
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Translation => "translation",
            FaultKind::AccessFlag => "access-flag",
            FaultKind::Permission => "permission",
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.level >= 0xfe {
            // The model's "any level" (a target whose level it cannot predict).
            return write!(f, "{} fault", self.kind);
        }
        write!(f, "{} fault, level {}", self.kind, self.level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Profile;
    use alloc::collections::BTreeMap;

    fn mem(words: &[(u64, u64)]) -> BTreeMap<u64, u64> {
        words.iter().copied().collect()
    }

    #[test]
    fn lpae_walk_through_three_levels_and_faults() {
        let g = Geometry::ARMV7_40BIT;
        let page = 0x4400_0000 | 0x7fd | 0b10; // normal rw, AF, page
        let m = mem(&[(0x1000_0008, 0x1000_2003), (0x1000_2000 + 8, 0x1000_3003), (0x1000_3000, page)]);
        let mut read = |pa: Pa| m.get(&pa.0).copied().unwrap_or(0);
        let ipa = Ipa(1 << 30 | 1 << 21);
        let leaf = translate(&g, &mut read, Pa(0x1000_0000), ipa).unwrap();
        assert_eq!((leaf.level, leaf.pa), (3, Pa(0x4400_0000)));
        let f = translate(&g, &mut read, Pa(0x1000_0000), Ipa(0)).unwrap_err();
        assert_eq!(f, Fault { kind: FaultKind::Translation, level: 1 });
        let f = translate(&g, &mut read, Pa(0x1000_0000), ipa.add(0x1000)).unwrap_err();
        assert_eq!(f.level, 3);
        assert!(permit(&leaf, Need::Write).is_ok());
    }

    #[test]
    fn aarch64_block_covers_its_pages() {
        let g = Geometry::aarch64(32, 1).unwrap();
        assert_eq!(g.profile, Profile::Aarch64);
        // Level 1 entry 1 -> level 2 table; its entry 3 is a 2 MiB block at 0x4060_0000, RO.
        let block = 0x4060_0000 | 0x400 | 0b11 << 8 | 0b01 << 6 | 0b1111 << 2 | 0b01;
        let m = mem(&[(0x2000_0008, 0x2000_1003), (0x2000_1000 + 3 * 8, block)]);
        let mut read = |pa: Pa| m.get(&pa.0).copied().unwrap_or(0);
        let leaf = translate(&g, &mut read, Pa(0x2000_0000), Ipa(0x4060_0000 + 0x12_3456)).unwrap();
        assert_eq!((leaf.level, leaf.pa), (2, Pa(0x4072_3000)));
        assert!(permit(&leaf, Need::Write).is_err() && permit(&leaf, Need::Execute).is_ok());
        let f = translate(&g, &mut read, Pa(0x2000_0000), Ipa(1 << 32)).unwrap_err();
        assert_eq!(f, Fault { kind: FaultKind::Translation, level: 1 });
    }
}
