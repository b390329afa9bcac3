//! The architectural LPAE stage-2 walker (4 KiB granule, 40-bit IPA, starting at level 1),
//! written from the architecture, not from `mmu`: the oracles, the simulator's guest
//! accesses and the table dump all use this one walker.

use crate::machine::{Fault, FaultKind};
use mmu::addr::{entries_at, level_size, LEAF_LEVEL, ROOT_LEVEL};
use mmu::{Descriptor, Ipa, Pa};

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The leaf descriptor (a page at level 3, or a block at level 1 or 2).
    pub desc: Descriptor,
    /// Its level.
    pub level: u8,
    /// The output address of the translated page.
    pub pa: Pa,
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
pub fn translate(read: &mut impl FnMut(Pa) -> u64, root: Pa, ipa: Ipa) -> Result<Leaf, Fault> {
    let mut table = root;
    let mut level = ROOT_LEVEL;
    loop {
        let desc = Descriptor(read(table.add(ipa.index(level) as u64 * 8)));
        let fault = |kind| Err(Fault { kind, level });
        let kind = desc.0 & 0b11;
        let leaf = match (level, kind) {
            (_, 0b00) | (_, 0b10) => return fault(FaultKind::Translation),
            (LEAF_LEVEL, 0b01) => return fault(FaultKind::Translation), // reserved at level 3
            (LEAF_LEVEL, _) | (_, 0b01) => true,
            _ => false,
        };
        if leaf {
            if !desc.af() {
                return fault(FaultKind::AccessFlag);
            }
            let offset = ipa.0 & (level_size(level) - 1) & !0xfff;
            let base = desc.0 & Descriptor::OA_MASK & !(level_size(level) - 1);
            return Ok(Leaf { desc, level, pa: Pa(base | offset) });
        }
        table = desc.output_address();
        level += 1;
    }
}

/// Checks stage-2 permissions of a leaf for an access.
pub fn permit(leaf: &Leaf, need: Need) -> Result<(), Fault> {
    let hap = leaf.desc.hap();
    let ok = match need {
        Need::Read => hap.readable(),
        Need::Write => hap.writable(),
        Need::Execute => hap.readable() && !leaf.desc.xn(),
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
    Table { level: u8, ptr: Pa, ipa: Ipa, desc: Descriptor },
    /// A valid leaf (page or block).
    Leaf { level: u8, ptr: Pa, ipa: Ipa, desc: Descriptor },
    /// A run of `count` invalid entries starting at `ptr` (folded).
    Empty { level: u8, ptr: Pa, ipa: Ipa, count: usize },
    /// A valid table descriptor pointing at a table already visited (not descended again).
    Alias { level: u8, ptr: Pa, ipa: Ipa, desc: Descriptor },
}

/// Visits every entry under `root` in address order, tables before their contents, folding
/// runs of invalid entries. Each table page is descended at most once, so corrupted tables
/// cannot make the walk explode; a second link to one is reported as [`Visit::Alias`].
pub fn visit(read: &mut impl FnMut(Pa) -> u64, root: Pa, f: &mut impl FnMut(Visit)) {
    let mut seen: alloc::collections::BTreeSet<u64> = alloc::collections::BTreeSet::new();
    seen.insert(root.0);
    visit_table(read, root, ROOT_LEVEL, 0, &mut seen, f);
}

fn visit_table(
    read: &mut impl FnMut(Pa) -> u64,
    table: Pa,
    level: u8,
    base: u64,
    seen: &mut alloc::collections::BTreeSet<u64>,
    f: &mut impl FnMut(Visit),
) {
    let n = entries_at(level);
    let mut i = 0;
    while i < n {
        let ptr = table.add(i as u64 * 8);
        let ipa = Ipa(base + i as u64 * level_size(level));
        let desc = Descriptor(read(ptr));
        if !desc.is_valid() {
            let mut count = 1;
            while i + count < n && !Descriptor(read(table.add((i + count) as u64 * 8))).is_valid() {
                count += 1;
            }
            f(Visit::Empty { level, ptr, ipa, count });
            i += count;
            continue;
        }
        if desc.is_table(level) {
            let child = desc.output_address();
            if seen.insert(child.0) {
                f(Visit::Table { level, ptr, ipa, desc });
                visit_table(read, child, level + 1, ipa.0, seen, f);
            } else {
                f(Visit::Alias { level, ptr, ipa, desc });
            }
        } else {
            f(Visit::Leaf { level, ptr, ipa, desc });
        }
        i += 1;
    }
}
