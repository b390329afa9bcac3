//! The structure oracle: every new descriptor is well formed for the profile (decoded by
//! the harness's own layer), every table page is linked from one entry only, nothing touches
//! a freed page, table pages of refcounting targets hold 1 + their valid entries (the root's
//! count, on its head page, is checked over all its pages whenever either is touched), and
//! no page is left allocated and unreachable: at VM destruction and at the end of every
//! sequence.
//!
//! From the architecture: descriptor formats, which levels may hold blocks. From the
//! hypervisor's contract (not from the target's code): which memory types it uses, that
//! refcounting targets link empty tables.

use crate::arch::desc::Entry;
use crate::arch::{level_size, Desc, Ipa, Pa, Profile};
use crate::layout::Layout;
use crate::pool::Page;
use crate::violation::{Detail, Malformation, Use};
use alloc::vec::Vec;

/// What the structure oracle expects of a target.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// The profile whose descriptor formats apply.
    pub profile: Profile,
    /// The target may write block descriptors.
    pub blocks: bool,
    /// Table pages carry 1 + valid entries references, and tables are linked empty.
    pub refcounted: bool,
    /// The MemAttr of the target's device mappings (normal memory is 0b1111): any other
    /// value is malformed.
    pub device_memattr: u8,
}

/// Checks a descriptor newly written at `at` (a table at `level`, translating from `ipa`, of
/// `vm`) and links the table it points to. `found` collects violations.
#[allow(clippy::too_many_arguments)]
pub fn check_new(
    pages: &mut [Page],
    layout: &Layout,
    rules: &Rules,
    at: Pa,
    level: u8,
    vm: u8,
    ipa: Ipa,
    new: Desc,
    found: &mut Vec<Detail>,
) -> Option<usize> {
    let malformed = |problem| Detail::Malformed { at, level, desc: new, problem };
    match rules.profile.decode(level, new) {
        Entry::Invalid => None,
        Entry::Reserved => {
            found.push(malformed(Malformation::Reserved));
            None
        }
        Entry::Leaf(l) => {
            let problem = if level < 3 && !rules.blocks {
                Some(Malformation::Block)
            } else if l.res0 != 0 {
                Some(Malformation::Reserved)
            } else if l.upper != 0 {
                Some(Malformation::UpperBits)
            } else if l.memattr != 0b1111 && l.memattr != rules.device_memattr {
                Some(Malformation::MemAttr)
            } else if !l.af {
                Some(Malformation::NoAccessFlag)
            } else if l.contiguous {
                Some(Malformation::Contiguous)
            } else {
                None
            };
            if let Some(problem) = problem {
                found.push(malformed(problem));
            }
            None
        }
        Entry::Table { next, res0 } => {
            if res0 != 0 {
                found.push(malformed(Malformation::Reserved));
            }
            let Some(c) = layout.pool_index(next) else {
                found.push(malformed(Malformation::TableOutsidePool));
                return None;
            };
            let page = pages[c];
            if !page.allocated {
                found.push(Detail::UseAfterFree { page: next, what: Use::Link });
                return None;
            }
            if page.table {
                found.push(Detail::TableAliased { table: next, first: Pa(page.parent), second: at });
                return None;
            }
            if page.valid != 0 && rules.refcounted {
                found.push(malformed(Malformation::TableNotEmpty));
            }
            let p = &mut pages[c];
            p.table = true;
            p.level = level + 1;
            p.parent = at.0;
            p.vm = vm;
            p.ipa = ipa.0;
            Some(c)
        }
    }
}

/// The table page at `c` was unlinked from `at`.
pub fn unlink(pages: &mut [Page], c: usize, at: Pa) {
    if pages[c].parent == at.0 && !pages[c].root {
        pages[c].parent = 0;
        pages[c].table = false;
    }
}

/// The reference count page `i` must hold, or `None` when the page is not a table.
/// `root_pages` is the number of pages of a root.
pub fn expected_count(pages: &[Page], i: usize, root_pages: usize) -> Option<u32> {
    let p = &pages[i];
    if !p.allocated || !p.table {
        return None;
    }
    if !p.root {
        return Some(1 + u32::from(p.valid));
    }
    if !p.head {
        return Some(0);
    }
    let valid: u32 = pages[i..(i + root_pages).min(pages.len())].iter().map(|q| u32::from(q.valid)).sum();
    Some(1 + valid)
}

/// End of an op: the refcount of every touched table page (and of every page of a touched
/// root) must match. Each mismatch is reported once until repaired.
pub fn check_refcounts(
    pages: &mut [Page],
    layout: &Layout,
    touched: &[u32],
    roots: &[Option<Pa>],
    root_pages: usize,
    found: &mut Vec<Detail>,
) {
    let mut check = |pages: &mut [Page], i: usize| {
        let Some(expected) = expected_count(pages, i, root_pages) else { return };
        let ok = pages[i].count == expected;
        if !ok && !pages[i].reported {
            found.push(Detail::Refcount { page: layout.pool_page(i), count: pages[i].count, expected });
        }
        pages[i].reported = !ok;
    };
    let mut roots_touched: Vec<usize> = Vec::new();
    for &i in touched {
        let i = i as usize;
        if pages[i].root && pages[i].allocated {
            if let Some(head) = roots
                .iter()
                .flatten()
                .filter_map(|r| layout.pool_index(*r))
                .find(|&h| h <= i && i < h + root_pages)
            {
                if !roots_touched.contains(&head) {
                    roots_touched.push(head);
                }
                continue;
            }
        }
        check(pages, i);
    }
    for head in roots_touched {
        for i in head..head + root_pages {
            check(pages, i);
        }
    }
}

/// Pages allocated and unreachable: not a table of a live VM, not `kept` (pages a target
/// legitimately holds, such as its vCPU caches; indexed by page). Only pages of VMs for
/// which `scope` is true are reported, as (vm, count, first page index). One pass.
pub fn leaks(
    pages: &[Page],
    high: usize,
    live: &[bool],
    kept: &[bool],
    scope: impl Fn(u8) -> bool,
) -> Vec<(u8, u32, usize)> {
    let mut out: Vec<(u8, u32, usize)> = Vec::new();
    for (i, p) in pages[..high].iter().enumerate() {
        if !p.allocated || kept.get(i).copied().unwrap_or(false) || !scope(p.vm) {
            continue;
        }
        if p.table && live.get(p.vm as usize).copied().unwrap_or(false) {
            continue;
        }
        match out.iter_mut().find(|(vm, _, _)| *vm == p.vm) {
            Some(e) => e.1 += 1,
            None => out.push((p.vm, 1, i)),
        }
    }
    out
}

/// The IPA translated by the entry at byte offset `offset` of a table page `p`.
pub fn entry_ipa(p: &Page, offset: u64) -> Ipa {
    Ipa(p.ipa + (offset / 8) * level_size(p.level))
}
