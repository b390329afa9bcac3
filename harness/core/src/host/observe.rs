//! How the host sees a descriptor change: every oracle on each write (`observed`), tables
//! filled before they were linked (`adopt`), and the page diffs that turn a memory-owning
//! target's stores into ordered writes (`sync*`, `emit`).

use super::{Diffs, Host};
use crate::arch::desc::Entry;
use crate::arch::{Desc, Ipa, Pa, Vmid, PAGE_SIZE};
use crate::event::Event;
use crate::feedback::{bucket, Family};
use crate::machine::Machine;
use crate::op::MAX_VMS;
use crate::oracle::cache;
use crate::oracle::structure::{self};
use crate::target::Observe;
use crate::violation::{Detail, Malformation, Use};
use alloc::vec::Vec;

impl<M: Machine> Host<M> {
    /// A descriptor at `pa` (page `i`) went from `old` to `new`: the event, then every oracle.
    /// `checked` is false for writes into a page that is not (yet) a table of a
    /// memory-owning target, which may fill a table before linking it.
    pub(super) fn observed(&mut self, i: usize, pa: Pa, old: Desc, new: Desc, checked: bool) {
        self.pool.pages[i].dirty_content = true;
        self.event(Event::Write { pa, old, new });
        let page = self.pool.pages[i];
        if !page.allocated {
            return self.violation(Detail::UseAfterFree { page: pa.page(), what: Use::Write });
        }
        let profile = self.rules.profile;
        let level = page.level;
        let leaf = |d: Desc| u16::from(page.table && profile.is_leaf(level, d));
        let p = &mut self.pool.pages[i];
        p.valid = (i32::from(p.valid) + i32::from(new.is_valid()) - i32::from(old.is_valid())) as u16;
        p.leaves = (i32::from(p.leaves) + i32::from(leaf(new)) - i32::from(leaf(old))) as u16;
        if !page.table {
            if checked {
                self.violation(Detail::Malformed {
                    at: pa,
                    level: 0,
                    desc: new,
                    problem: Malformation::NotATable,
                });
            }
            return;
        }
        self.touch(i);
        if self.feedback.on(Family::Tables) {
            let kind = |d: Desc| match profile.decode(level, d) {
                Entry::Invalid | Entry::Reserved => 0,
                Entry::Leaf(_) if level == 3 => 1,
                Entry::Leaf(_) => 2,
                Entry::Table { .. } => 3,
            };
            let l = usize::from(level & 3);
            let (ko, kn) = (kind(old), kind(new));
            self.feedback.hit(Family::Tables, l * 16 + ko * 4 + kn);
            let valid = u64::from(self.pool.pages[i].valid);
            self.feedback.hit(Family::Tables, 64 + l * 16 + bucket(valid, 10));
            let ipa = structure::entry_ipa(&page, pa.page_offset());
            self.feedback.table_written(level, ipa.0, kn);
        }
        let (vm, ipa) = (page.vm, structure::entry_ipa(&page, pa.page_offset()));
        if self.non_coherent {
            cache::written(&mut self.pool.pages[i], i, pa.page_offset(), self.op, &mut self.dirty_pages);
        }
        if old == new {
            return;
        }
        if old.is_table(level) {
            if let Entry::Table { next, .. } = profile.decode(level, old) {
                if let Some(c) = self.layout.pool_index(next) {
                    structure::unlink(&mut self.pool.pages, c, pa);
                }
            }
        }
        let linked = structure::check_new(
            &mut self.pool.pages,
            &self.layout,
            &self.rules,
            pa,
            level,
            vm,
            ipa,
            new,
            &mut self.found,
        );
        if let Some(c) = linked {
            self.links_this_op += 1;
            self.touch(c);
            if self.observe == Observe::MemoryOwning || self.pool.pages[c].valid > 0 {
                self.adopt(c);
            }
        }
        if old.is_valid() {
            self.tlb.changed(vm, level, self.op, ipa, old);
        }
        let vmid = self.vm_vmid[vm as usize];
        if let Some(d) = self.bbm.write(pa, vm, vmid, ipa, level, old, new) {
            self.found.push(d);
        }
        if new.is_table(level) || old.is_table(level) {
            self.table_changes.push((vm, ipa, level));
        } else {
            self.leaf_writes.push((vm, ipa, level));
        }
        self.flush_found();
    }

    /// The target linked table page `c`, which it may have filled while it was not yet
    /// linked: its valid entries are checked as new ones now that their level is known. A
    /// memory-owning target's page is read from its shadow, an instrumented one's (which
    /// has valid entries) from memory.
    pub(super) fn adopt(&mut self, c: usize) {
        // The valid words only (a new table is usually empty: no 4 KiB copy for it).
        let valid: Vec<(usize, u64)> = match self.shadow.get(c).and_then(|s| s.as_deref()) {
            Some(shadow) => valid_words(shadow),
            None if self.observe == Observe::MemoryOwning => return,
            None => {
                let base = self.layout.pool_page(c);
                (0..512)
                    .map(|w| (w, self.machine.read_pool(c, w, base.add(w as u64 * 8))))
                    .filter(|(_, d)| Desc(*d).is_valid())
                    .collect()
            }
        };
        let page = self.pool.pages[c];
        let profile = self.rules.profile;
        let mut leaves = 0u16;
        for (w, d) in valid {
            let d = Desc(d);
            let pa = self.layout.pool_page(c).add(w as u64 * 8);
            let ipa = structure::entry_ipa(&page, w as u64 * 8);
            leaves += u16::from(matches!(profile.decode(page.level, d), Entry::Leaf(_)));
            let linked = structure::check_new(
                &mut self.pool.pages,
                &self.layout,
                &self.rules,
                pa,
                page.level,
                page.vm,
                ipa,
                d,
                &mut self.found,
            );
            if let Some(g) = linked {
                self.adopt(g);
            }
            if d.is_table(page.level) {
                self.table_changes.push((page.vm, ipa, page.level));
            } else {
                self.leaf_writes.push((page.vm, ipa, page.level));
            }
        }
        self.pool.pages[c].leaves = leaves;
        self.flush_found();
    }

    /// Memory-owning targets: turns every change in their table pages since the last sync
    /// into write events, parents before children (so a new table's level is known when its
    /// entries are checked), page by page in address order. Only the pages the target can
    /// have written are compared: those it got a pointer to during this op, and the roots
    /// (whose pointers it keeps). [`Host::sync_all`] compares every page.
    pub fn sync(&mut self) {
        if self.observe != Observe::MemoryOwning || !self.called_this_op {
            return;
        }
        let pages = self.writable_pages(None);
        self.sync_pages(pages.into_iter());
    }

    /// Every table page compared with its shadow: the end of a sequence's safety net for a
    /// target that wrote through a pointer it kept from an earlier op.
    pub fn sync_all(&mut self) {
        if self.observe == Observe::MemoryOwning && self.target_called {
            self.sync_pages(0..self.pool.high);
        }
    }

    /// The pages a memory-owning target can have written in this op (of `vm`, or of all),
    /// in address order: those it got pointers to, and the root of `vm` (else of the VM the
    /// op is for: a call for one VM cannot reach another's root, whose pointer that VM's
    /// mapping keeps).
    pub(super) fn writable_pages(&self, vm: Option<u8>) -> Vec<usize> {
        let mut pages: Vec<usize> = self
            .exposed
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| vm.is_none_or(|v| self.pool.pages[i].vm == v))
            .collect();
        let of = vm.unwrap_or(self.op_vm);
        for (v, root) in self.roots.iter().enumerate() {
            if let (Some(root), true) = (root, of as usize == v) {
                let first = self.layout.pool_index(*root);
                pages.extend(first.into_iter().flat_map(|i| i..i + self.geometry.root_pages() as usize));
            }
        }
        if !pages.windows(2).all(|w| w[0] <= w[1]) {
            pages.sort_unstable();
        }
        pages.dedup();
        pages
    }

    /// Before a TLBI for `vmid`: the changes in the tables of its VM. A call changes the
    /// tables of the VM it is for (a write anywhere else is still seen, at the end of the
    /// op). A target issues one TLBI per page it changes, and a diff of every VM's tables
    /// at each would cost more than the op.
    pub(super) fn sync_vmid(&mut self, vmid: Vmid) {
        if self.observe != Observe::MemoryOwning {
            return;
        }
        match (0..MAX_VMS).find(|&v| self.vm_vmid[v] == vmid && self.roots[v].is_some()) {
            Some(vm) => self.sync_vm(vm as u8),
            None => self.sync(),
        }
    }

    /// Before a TLBI by IPA: only the descriptors on the IPA's walk path can be ordered
    /// against it by any oracle (a TLBI by IPA covers what was cached from the entries that
    /// translate it). When none of them changed since the last look, nothing needs to be
    /// seen now: a write elsewhere is neither covered by this TLBI nor changes what it
    /// covers, and it is seen at the next look. When one did, every page the target can have
    /// written is compared, so writes keep their order against the maintenance around them.
    /// A target that writes a range and then invalidates it page by page is compared once,
    /// then checked in O(levels) per TLBI.
    pub(super) fn sync_path(&mut self, vmid: Vmid, ipa: Ipa) {
        if self.observe != Observe::MemoryOwning {
            return;
        }
        let Some(vm) = (0..MAX_VMS).find(|&v| self.vm_vmid[v] == vmid && self.roots[v].is_some()) else {
            return self.sync();
        };
        let g = self.geometry;
        if ipa.0 >= g.ipa_limit() {
            return;
        }
        // The path through the tables as written and, where an entry changed, through the
        // tables as last seen (a write into a table unlinked meanwhile counts too).
        // At most two tables a level (as written and as last seen): fixed arrays, as this
        // runs at every TLBI by IPA.
        let (mut changed, mut n_changed) = ([0usize; 16], 0);
        let (mut todo, mut n_todo) = ([(Pa(0), 0u8); 16], 1);
        todo[0] = (self.roots[vm].unwrap_or(Pa(0)), g.start_level);
        while n_todo > 0 {
            n_todo -= 1;
            let (table, level) = todo[n_todo];
            let at = table.add(g.index(level, ipa) as u64 * 8);
            let Some(i) = self.layout.pool_index(at) else { continue };
            let w = ((at.0 % PAGE_SIZE) / 8) as usize;
            let Some(old) = self.shadow.get(i).and_then(|s| s.as_deref()).map(|s| s[w]) else { continue };
            let new = self.machine.read_pool(i, w, at);
            for d in [new, old].into_iter().take(if new == old { 1 } else { 2 }) {
                if let (Entry::Table { next, .. }, true) = (g.profile.decode(level, Desc(d)), level < 3) {
                    todo[n_todo] = (next, level + 1);
                    n_todo += 1;
                }
            }
            if new != old {
                changed[n_changed] = i;
                n_changed += 1;
            }
        }
        if n_changed > 0 {
            let mut pages = self.writable_pages(Some(vm as u8));
            pages.extend(&changed[..n_changed]);
            pages.sort_unstable();
            pages.dedup();
            self.sync_pages(pages.into_iter());
        }
    }

    /// The changes in the tables of `vm` (including those allocated for it in this op).
    pub(super) fn sync_vm(&mut self, vm: u8) {
        let pages = self.writable_pages(Some(vm));
        self.sync_pages(pages.into_iter());
    }

    pub(super) fn sync_pages(&mut self, pages: impl Iterator<Item = usize>) {
        // Per changed page: its index and (word, old, new) of each changed word.
        let mut changed: Vec<(usize, Diffs)> = Vec::new();
        for i in pages {
            let Some(shadow) = self.shadow.get(i).and_then(|s| s.as_deref()) else { continue };
            let mut diffs = Vec::new();
            self.machine.diff_page(i, shadow, &mut diffs);
            if !diffs.is_empty() {
                changed.push((i, diffs));
            }
        }
        self.emit(changed);
    }

    /// Write events for changed words: first the entries a table lost, deepest tables first
    /// (a target empties a table before it unlinks it, so an entry cleared in a table
    /// unlinked in the same window was cleared while the table was linked), then the rest,
    /// parents before children (a table is linked before its entries are seen).
    pub(super) fn emit(&mut self, mut changed: Vec<(usize, Diffs)>) {
        let mut removals: Vec<(u8, usize, usize, u64, u64)> = Vec::new();
        for (i, diffs) in &mut changed {
            let page = self.pool.pages[*i];
            if page.table {
                diffs.retain(|&(w, old, new)| {
                    let removal = Desc(old).is_valid() && !Desc(new).is_valid();
                    if removal {
                        removals.push((page.level, *i, w, old, new));
                    }
                    !removal
                });
            }
        }
        removals.sort_by_key(|r| core::cmp::Reverse(r.0));
        for (_, i, w, old, new) in removals {
            if let Some(s) = self.shadow[i].as_deref_mut() {
                s[w] = new;
            }
            let pa = self.layout.pool_page(i).add(w as u64 * 8);
            self.observed(i, pa, Desc(old), Desc(new), true);
        }
        changed.retain(|(_, d)| !d.is_empty());
        while !changed.is_empty() {
            let pages = &self.pool.pages;
            let next = changed
                .iter()
                .enumerate()
                .filter(|(_, (i, _))| pages[*i].table)
                .min_by_key(|(_, (i, _))| pages[*i].level)
                .map(|(k, _)| k);
            let (i, diffs, checked) = match next {
                Some(k) => {
                    let (i, d) = changed.remove(k);
                    (i, d, true)
                }
                None => {
                    let (i, d) = changed.remove(0);
                    (i, d, false)
                }
            };
            for (w, old, new) in diffs {
                // The shadow moves word by word, so a table linked meanwhile is adopted with
                // what it held before this window, and its own changes follow as writes.
                if let Some(s) = self.shadow[i].as_deref_mut() {
                    s[w] = new;
                }
                let pa = self.layout.pool_page(i).add(w as u64 * 8);
                self.observed(i, pa, Desc(old), Desc(new), checked);
            }
        }
    }
}

/// The valid words of a table page, with their indexes. Most of a new table is empty: an
/// OR over each run of 8 words, which the compiler vectorises, skips the empty runs.
fn valid_words(words: &[u64]) -> Vec<(usize, u64)> {
    let mut valid = Vec::new();
    for (k, run) in words.chunks(8).enumerate() {
        if Desc(run.iter().fold(0, |a, &d| a | d)).is_valid() {
            let at = k * 8;
            valid.extend(
                run.iter().enumerate().filter(|(_, &d)| Desc(d).is_valid()).map(|(w, &d)| (at + w, d)),
            );
        }
    }
    valid
}

#[cfg(test)]
mod tests {
    use super::valid_words;

    /// The words with bit 0 set, wherever they lie in their run of 8, and nothing else.
    #[test]
    fn valid_words_are_the_words_with_bit_0_set() {
        let mut page = [0u64; 512];
        for (w, d) in [(0, 0b11), (7, 1), (8, 0b10), (9, 0x4000_0000_0001), (511, 3), (300, 0xfffe)] {
            page[w] = d;
        }
        assert_eq!(valid_words(&page), [(0, 0b11), (7, 1), (9, 0x4000_0000_0001), (511, 3)]);
        assert!(valid_words(&[0u64; 512]).is_empty());
    }
}
