//! State feedback for the fuzzers: the abstract state the oracles compute (which tables
//! exist, which entries wait for an invalidation, which VMIDs are live in which generation)
//! as a fixed array of 8-bit counters, which the fuzz targets hand to libFuzzer as extra
//! counters and to AFL++ in its map. An input that reaches a new state is kept even when it
//! runs no new line of the code under test.
//!
//! Every feature is a bounded, deterministic function of the state after an op: small
//! enumerations and logarithmic buckets, never a hash of an address. Each family has its own
//! slots and can be turned off ([`Feedback::families`]) for the time-to-bug ablation.

use alloc::vec::Vec;

/// Counters in all.
pub const FEATURES: usize = 2560;

macro_rules! families {
    ($( $variant:ident = $name:literal, $base:expr, $size:expr, $doc:literal; )*) => {
        /// A family of features.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Family { $( #[doc = $doc] $variant, )* }

        impl Family {
            /// Every family.
            pub const ALL: &'static [Family] = &[$(Family::$variant,)*];
            /// Its name (`STAGEHAND_FEATURES`).
            pub const fn name(self) -> &'static str {
                match self { $(Family::$variant => $name,)* }
            }
            /// Its first slot and number of slots.
            pub const fn slots(self) -> (usize, usize) {
                match self { $(Family::$variant => ($base, $size),)* }
            }
        }
    };
}

families! {
    Outcome = "outcome", 0, 19 * 64, "op kind x what it returned (each errno, each refusal, each access outcome by fault class and level)";
    Tables = "tables", 1216, 256, "descriptor transitions by level (invalid, page, block, table), valid entries of a written table in buckets, table pages freed by level, pages allocated per op";
    Pending = "pending", 1472, 256, "each TLBI by scope x the pending changes it reaches x those left, and what is pending (stage-2-only, combined) when a guest runs";
    Bbm = "bbm", 1728, 64, "break-before-make automaton: locations in each step, by level";
    Vmid = "vmid", 1792, 128, "VMID events (first assignment, new generation, rollover) x live VMs";
    Memslots = "memslots", 1920, 128, "memslot overlap, adjacency and shared 2 MiB regions with the existing ones, position of an insertion or removal, result, whether a removal leaves its regions' tables; the slots an HVA op reaches, live or deleted, and whether their region is mapped";
    Pairs = "pairs", 2048, 19 * 19, "the previous op on the same VM and page x this op";
    Ranges = "ranges", 2416, 128, "a range op's shape against the state (walkers go wrong at boundaries): unaligned start, 2 MiB and 1 GiB boundaries crossed, its first 2 MiB region mapped, something mapped past that region";
}

/// Bucket of a count: 0, 1, 2-3, 4-7, 8-15, ... (1 + `log2`, at most `max`).
pub const fn bucket(n: u64, max: usize) -> usize {
    let b = if n == 0 { 0 } else { 64 - n.leading_zeros() as usize };
    if b > max {
        max
    } else {
        b
    }
}

/// The counters and the little state some families need.
pub struct Feedback {
    /// The families on (bit [`Family`] as usize); 0 turns feedback off.
    pub families: u32,
    /// The counters of the current sequence.
    pub counters: [u8; FEATURES],
    /// The last op kind on each of a few (VM, page) slots: direct-mapped, so it is bounded.
    last: [(u8, u64, u8); 64],
    /// Tables linked at each level in this sequence.
    links: [u32; 4],
    /// Distinct 1 GiB and 2 MiB regions where leaves were written (at most 64 of each).
    regions: [Vec<u64>; 2],
    /// Pages the current op took out of the model, and the 1 GiB regions of them.
    removed: (u64, Vec<u64>),
    /// The last few memslots deleted in this sequence: (VM, first HVA, bytes, first GPA).
    deleted: Vec<(u8, u64, u64, u64)>,
}

impl Default for Feedback {
    fn default() -> Self {
        Feedback {
            families: 0,
            counters: [0; FEATURES],
            last: [(u8::MAX, 0, 0); 64],
            links: [0; 4],
            regions: [Vec::new(), Vec::new()],
            removed: (0, Vec::new()),
            deleted: Vec::new(),
        }
    }
}

impl Feedback {
    /// Every family on.
    pub const ALL: u32 = (1 << Family::ALL.len()) - 1;

    /// A new sequence.
    pub fn reset(&mut self) {
        if self.families != 0 {
            self.counters = [0; FEATURES];
            self.last = [(u8::MAX, 0, 0); 64];
            self.links = [0; 4];
            self.regions.iter_mut().for_each(Vec::clear);
            self.deleted.clear();
        }
    }

    /// A range op (`which`: 0 `unmap_hva_range`, per slot, 1 `unmap_range`, 2
    /// `protect_range`, 3 `map_range`) over `[start, end)`; `first` is whether its first
    /// 2 MiB region has a mapping, `beyond` whether something is mapped in the range past
    /// that region.
    pub fn range(&mut self, which: usize, start: u64, end: u64, first: bool, beyond: bool) {
        let last = end.saturating_sub(1);
        let shape = usize::from(!start.is_multiple_of(2 << 20))
            | usize::from(start >> 21 != last >> 21) << 1
            | usize::from(start >> 30 != last >> 30) << 2
            | usize::from(first) << 3
            | usize::from(beyond) << 4;
        self.hit(Family::Ranges, which * 32 + shape);
    }

    /// The op took `[start, end)` out of the model.
    pub fn removed(&mut self, start: u64, end: u64) {
        self.removed.0 += (end - start) >> 12;
        for r in (start >> 30)..=((end - 1) >> 30) {
            if self.removed.1.len() < 8 && !self.removed.1.contains(&r) {
                self.removed.1.push(r);
            }
        }
    }

    /// Pages and 1 GiB regions the op took out of the model; starts counting afresh.
    pub fn take_removed(&mut self) -> (u64, u64) {
        let r = (self.removed.0, self.removed.1.len() as u64);
        self.removed.0 = 0;
        self.removed.1.clear();
        r
    }

    /// An entry at `level` translating from `ipa` was written with a descriptor of kind
    /// `kind` (0 invalid, 1 page, 2 block, 3 table): how many tables each level has gained,
    /// and how many distinct 1 GiB and 2 MiB regions hold written leaves, in this sequence
    /// (what a walk across regions needs before it can go wrong).
    pub fn table_written(&mut self, level: u8, ipa: u64, kind: usize) {
        if kind == 3 {
            let l = usize::from(level & 3);
            self.links[l] += 1;
            self.hit(Family::Tables, 140 + l * 8 + bucket(u64::from(self.links[l]), 7));
        }
        if kind == 1 || kind == 2 {
            for (k, shift) in [(0, 30), (1, 21)] {
                let r = &mut self.regions[k];
                if r.len() < 64 && !r.contains(&(ipa >> shift)) {
                    r.push(ipa >> shift);
                    let n = r.len() as u64;
                    self.hit(Family::Tables, 172 + k * 8 + bucket(n, 7));
                }
            }
        }
    }

    /// A memslot of `vm` was deleted (the last 8 are remembered).
    pub fn slot_deleted(&mut self, vm: u8, hva: u64, bytes: u64, gpa: u64) {
        if self.on(Family::Memslots) {
            if self.deleted.len() == 8 {
                self.deleted.remove(0);
            }
            self.deleted.push((vm, hva, bytes, gpa));
        }
    }

    /// The GPA `hva` had in a memslot of `vm` deleted earlier in this sequence.
    pub fn deleted_gpa(&self, vm: u8, hva: u64) -> Option<u64> {
        self.deleted.iter().rev().find_map(|&(v, start, bytes, gpa)| {
            let off = hva.checked_sub(start)?;
            (v == vm && off < bytes).then(|| gpa + off)
        })
    }

    /// True when `f` is on.
    #[inline]
    pub const fn on(&self, f: Family) -> bool {
        self.families & (1 << f as u32) != 0
    }

    /// Counts feature `index` of family `f`.
    #[inline]
    pub fn hit(&mut self, f: Family, index: usize) {
        if self.on(f) {
            let (base, size) = f.slots();
            let c = &mut self.counters[base + index % size];
            *c = c.saturating_add(1);
        }
    }

    /// An op of kind `kind` on `vm` touched the page of `ipa`: the pair with the previous op
    /// on that page.
    pub fn pair(&mut self, vm: u8, ipa: u64, kind: u8) {
        if !self.on(Family::Pairs) {
            return;
        }
        let page = ipa >> 12;
        let slot = ((page ^ (page >> 6) ^ (u64::from(vm) * 7)) % 64) as usize;
        let (v, p, k) = self.last[slot];
        if v == vm && p == page {
            self.hit(Family::Pairs, usize::from(k) * 19 + usize::from(kind));
        }
        self.last[slot] = (vm, page, kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_do_not_overlap_and_fit() {
        let mut end = 0;
        for f in Family::ALL {
            let (base, size) = f.slots();
            assert!(base >= end, "{} overlaps the family before it", f.name());
            end = base + size;
        }
        assert!(end <= FEATURES);
        assert_eq!(bucket(0, 9), 0);
        assert_eq!(bucket(1, 9), 1);
        assert_eq!(bucket(3, 9), 2);
        assert_eq!(bucket(4, 9), 3);
        assert_eq!(bucket(1 << 40, 9), 9);
    }

    #[test]
    fn hits_count_only_families_that_are_on() {
        let mut f = Feedback { families: 1 << Family::Pairs as u32, ..Feedback::default() };
        f.hit(Family::Outcome, 3);
        assert!(f.counters.iter().all(|&c| c == 0));
        f.pair(1, 0x1000, 5);
        f.pair(1, 0x1fff, 13);
        let (base, _) = Family::Pairs.slots();
        assert_eq!(f.counters[base + 5 * 19 + 13], 1);
    }
}
