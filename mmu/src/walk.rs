//! The one table walker of the crate. Set, clear and teardown are visitors over it, in the
//! manner of `kvm_pgtable_walk`: the walker reads descriptors and recurses, the visitor decides.

use crate::addr::{entries_at, level_size, Ipa, Pa, LEAF_LEVEL, ROOT_LEVEL};
use crate::desc::Descriptor;
use crate::error::Error;
use crate::platform::Platform;

/// Why the walker calls the visitor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Visit {
    /// An entry that is not a valid table: any level-3 entry, or an invalid or block entry at
    /// level 1 or 2. The visitor may install a table in it; the walker then descends.
    Leaf,
    /// A valid table descriptor, before its subtable is walked.
    TablePre,
    /// A valid table descriptor, after its subtable was walked.
    TablePost,
}

/// The entry being visited.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Level of the table holding the entry (1 to 3).
    pub level: u8,
    /// First IPA translated through the entry.
    pub ipa: Ipa,
    /// Address of the descriptor.
    pub ptr: Pa,
    /// The descriptor as read, or as the visitor last wrote it.
    pub desc: Descriptor,
}

impl Entry {
    /// Writes `desc` through the platform and remembers it.
    pub fn set<P: Platform>(&mut self, p: &mut P, desc: Descriptor) {
        p.write_desc(self.ptr, desc);
        self.desc = desc;
    }
}

/// Whether the walk goes on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flow {
    /// Visit the next entry.
    Continue,
    /// End the whole walk now.
    Stop,
}

/// A visitor over table entries.
pub trait Visitor<P: Platform> {
    /// Called for each entry in the walked range; see [`Visit`].
    fn visit(&mut self, p: &mut P, visit: Visit, entry: &mut Entry) -> Result<Flow, Error>;
}

/// Walks the tables under `root` for every entry overlapping `[start, end)`, in address
/// order, calling `v` as described by [`Visit`].
pub fn walk<P: Platform, V: Visitor<P>>(
    p: &mut P,
    root: Pa,
    start: Ipa,
    end: Ipa,
    v: &mut V,
) -> Result<Flow, Error> {
    walk_table(p, v, root, ROOT_LEVEL, 0, start.0, end.0)
}

fn walk_table<P: Platform, V: Visitor<P>>(
    p: &mut P,
    v: &mut V,
    table: Pa,
    level: u8,
    base: u64,
    start: u64,
    end: u64,
) -> Result<Flow, Error> {
    let size = level_size(level);
    let mut idx = (start.saturating_sub(base) / size) as usize;
    while idx < entries_at(level) {
        let ipa = base + idx as u64 * size;
        if ipa >= end {
            break;
        }
        let ptr = table.add(idx as u64 * 8);
        let mut e = Entry { level, ipa: Ipa(ipa), ptr, desc: p.read_desc(ptr) };
        if !e.desc.is_table(level) && v.visit(p, Visit::Leaf, &mut e)? == Flow::Stop {
            return Ok(Flow::Stop);
        }
        if level < LEAF_LEVEL && e.desc.is_table(level) {
            if v.visit(p, Visit::TablePre, &mut e)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
            let (lo, hi) = (start.max(ipa), end.min(ipa + size));
            let child = e.desc.output_address();
            if walk_table(p, v, child, level + 1, ipa, lo, hi)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
            if v.visit(p, Visit::TablePost, &mut e)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        idx += 1;
    }
    Ok(Flow::Continue)
}
