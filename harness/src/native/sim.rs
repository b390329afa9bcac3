//! The simulated machine: pool memory with a point-of-coherency view, a TLB that keeps every
//! translation the architecture allows it to keep (stage-2-only and combined stage 1+2
//! entries, per VMID) until an invalidation whose scope covers it, and guest accesses
//! walked the way the ARM images' guest stubs perform them. Small and boring on purpose; the
//! checking lives in the shared core.

use harness_core::arch::tlb::{Cached, Tlbi};
use harness_core::arch::walk::{self, Leaf, Need};
use harness_core::arch::{level_size, Geometry, Ipa, Pa, Vttbr, PAGE_SIZE};
use harness_core::layout::{Layout, POISON, POOL_PAGES, STUB_IPA};
use harness_core::machine::{Abort, AbortOn, AccessKind, AccessOutcome, Machine};
use harness_core::op::{Config, Guest, Walker};
use std::alloc::{alloc_zeroed, dealloc, Layout as AllocLayout};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::ptr::NonNull;

/// A fast deterministic hasher for small integer keys (Fx-style multiply-rotate).
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

const WORDS: usize = POOL_PAGES * 512;

/// Pool memory: one flat, page-aligned allocation the OS zeroes lazily, so a page keeps its
/// address for its whole life (a memory-owning target writes through pointers into it).
/// A page is either uniformly filled (a fresh allocation, a freed page: O(1) to fill) or
/// materialised on its first partial write. All access goes through the raw base pointer.
struct View {
    raw: NonNull<u8>,
    base: NonNull<u64>,
    fill: Vec<u64>,
    dense: Vec<bool>,
}

impl View {
    /// A small alignment and a page of slack: the allocator then takes fresh zero pages
    /// from the OS instead of memset-ing 16 MiB (it zeroes by hand for large alignments).
    fn layout() -> AllocLayout {
        AllocLayout::from_size_align(WORDS * 8 + PAGE_SIZE as usize, 16).expect("a valid layout")
    }

    fn new() -> Self {
        // Safe because the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(Self::layout()) };
        let raw = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(Self::layout()));
        let pad = raw.as_ptr().align_offset(PAGE_SIZE as usize);
        // Safe because the slack page leaves room for the alignment padding.
        let base = unsafe { raw.add(pad) }.cast::<u64>();
        View { raw, base, fill: vec![POISON; POOL_PAGES], dense: vec![false; POOL_PAGES] }
    }

    #[inline]
    fn read(&self, p: usize, w: usize) -> u64 {
        if self.dense[p] {
            // Safe because p < POOL_PAGES and w < 512 index inside the allocation.
            unsafe { self.base.as_ptr().add(p * 512 + w).read() }
        } else {
            self.fill[p]
        }
    }

    /// Appends `(word, old, new)` for the words of page `p` that differ from `shadow`.
    fn diff_page(&self, p: usize, shadow: &[u64; 512], out: &mut Vec<(usize, u64, u64)>) {
        if self.dense[p] {
            // Safe because page p's 512 words lie inside the allocation, and nothing writes
            // them during the comparison.
            let words = unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(p * 512), 512) };
            // Most pages did not change: one comparison of the whole page first.
            if words != shadow.as_slice() {
                // Then by runs of 8 words, skipping the equal runs (an XOR-OR the compiler
                // vectorises): a write usually changes a word or two.
                for (k, (old, new)) in shadow.chunks_exact(8).zip(words.chunks_exact(8)).enumerate() {
                    if old.iter().zip(new).fold(0, |a, (o, n)| a | (o ^ n)) != 0 {
                        let diffs = old.iter().zip(new).enumerate().filter(|(_, (o, n))| o != n);
                        out.extend(diffs.map(|(w, (&o, &n))| (k * 8 + w, o, n)));
                    }
                }
            }
        } else {
            let fill = self.fill[p];
            out.extend(shadow.iter().enumerate().filter(|(_, &o)| o != fill).map(|(w, &o)| (w, o, fill)));
        }
    }

    /// The page's memory, materialised.
    fn page(&mut self, p: usize) -> *mut u64 {
        // Safe because p < POOL_PAGES indexes a page inside the allocation.
        let ptr = unsafe { self.base.as_ptr().add(p * 512) };
        if !self.dense[p] {
            for w in 0..512 {
                // Safe because the 512 words of page p lie inside the allocation.
                unsafe { ptr.add(w).write(self.fill[p]) };
            }
            self.dense[p] = true;
        }
        ptr
    }

    fn write(&mut self, p: usize, w: usize, value: u64) {
        let page = self.page(p);
        // Safe because w < 512.
        unsafe { page.add(w).write(value) };
    }

    fn fill(&mut self, p: usize, value: u64) {
        self.dense[p] = false;
        self.fill[p] = value;
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // Safe because `base` came from `alloc_zeroed` with this layout.
        unsafe { dealloc(self.raw.as_ptr(), Self::layout()) };
    }
}

/// The kinds of cached translation an entry stands for (bit 0 stage-2-only, bit 1
/// combined), so one lookup serves both.
const STAGE2: u8 = 1;
const COMBINED: u8 = 2;

const fn bit(kind: Cached) -> u8 {
    match kind {
        Cached::Stage2 => STAGE2,
        Cached::Combined => COMBINED,
    }
}

/// The simulated machine.
pub struct SimMachine {
    layout: Layout,
    geometry: Geometry,
    non_coherent: bool,
    /// The guest's identity stage 1 is on: its walks read the stub page through stage 2.
    guest_s1: bool,
    /// Table memory as the CPU sees it.
    cpu: View,
    /// Table memory at the point of coherency (non-coherent mode only).
    poc: View,
    /// Cached translations. Never iterated into anything recorded, so a hash map is fine.
    tlb: HashMap<(u16, u64), (Leaf, u8), BuildHasherDefault<WordHasher>>,
    /// Guest words stored so far (others hold their signature).
    stored: BTreeMap<u64, u32>,
    /// A TLB entry answered a translation of the current access.
    tlb_hit: bool,
}

impl SimMachine {
    /// A machine for `config` and the target's `geometry`.
    pub fn new(config: &Config, geometry: &Geometry) -> Self {
        let mut m = SimMachine {
            layout: config.layout,
            geometry: *geometry,
            non_coherent: false,
            guest_s1: true,
            cpu: View::new(),
            poc: View::new(),
            tlb: HashMap::default(),
            stored: BTreeMap::new(),
            tlb_hit: false,
        };
        m.reset(config, geometry, POOL_PAGES);
        m
    }

    fn slot(&self, pa: Pa) -> Option<(usize, usize)> {
        Some((self.layout.pool_index(pa)?, ((pa.0 % PAGE_SIZE) / 8) as usize))
    }

    /// What the table walker reads at `pa`: the point of coherency when the walker is not
    /// coherent and `cached` (what the hardware would see), else the CPU's view.
    fn walker_read(&self, pa: Pa, cached: bool) -> u64 {
        let view = if self.non_coherent && cached { &self.poc } else { &self.cpu };
        self.slot(pa).map_or(POISON, |(p, w)| view.read(p, w))
    }

    /// One translation of `ipa`. With `use_tlb`, a cached entry of `kind` answers first,
    /// then (for a combined lookup) a stage-2-only one; a walk fills both kinds, as the
    /// architecture allows. Without, the tables as the CPU wrote them.
    fn translate(
        &mut self,
        vttbr: Vttbr,
        ipa: u64,
        kind: Cached,
        use_tlb: bool,
    ) -> Result<Leaf, walk::Fault> {
        let vmid = vttbr.vmid_field().0;
        let page = ipa & !(PAGE_SIZE - 1);
        if use_tlb {
            if let Some((leaf, kinds)) = self.tlb.get_mut(&(vmid, page)) {
                if *kinds & (bit(kind) | STAGE2) != 0 {
                    self.tlb_hit = true;
                    *kinds |= bit(kind);
                    return Ok(*leaf);
                }
            }
        }
        let root = self.geometry.vttbr_root(vttbr);
        let g = self.geometry;
        let leaf = walk::translate(&g, &mut |a| self.walker_read(a, use_tlb), root, Ipa(ipa))?;
        if use_tlb {
            self.tlb.insert((vmid, page), (leaf, STAGE2 | bit(kind)));
        }
        Ok(leaf)
    }

    /// The guest stub's access. With the guest's identity stage 1 on (ARMv7 always): its
    /// walk (reads the stub page), fetch, then the data access; with its MMU off: fetch,
    /// then the access. With `use_tlb` false,
    /// every translation walks the tables as the CPU wrote them.
    fn run_stub(&mut self, vttbr: Vttbr, ipa: Ipa, kind: AccessKind, use_tlb: bool) -> Result<Pa, Abort> {
        let need_data = if matches!(kind, AccessKind::Write(_)) { Need::Write } else { Need::Read };
        let s1 = self.guest_s1;
        let steps = [
            (STUB_IPA, AbortOn::S1Walk, Need::Read, Cached::Stage2, s1),
            (STUB_IPA, AbortOn::Fetch, Need::Execute, Cached::Combined, true),
            (ipa, AbortOn::Data, need_data, Cached::Combined, true),
        ];
        let mut pa = Pa(0);
        for (at, on, need, cached, present) in steps {
            if !present {
                continue;
            }
            let leaf = self
                .translate(vttbr, at.0, cached, use_tlb)
                .and_then(|leaf| walk::permit(&leaf, need).map(|()| leaf))
                .map_err(|fault| Abort { on, fault, ipa: at.page() })?;
            pa = Pa(leaf.pa.0 | at.page_offset());
        }
        Ok(pa)
    }

    fn outcome(&self, r: Result<Pa, Abort>, kind: AccessKind) -> AccessOutcome {
        match (r, kind) {
            (Err(abort), _) => AccessOutcome::Abort(abort),
            (Ok(pa), AccessKind::Read) => {
                AccessOutcome::Read(self.stored.get(&pa.0).copied().unwrap_or(Layout::signature(pa)))
            }
            (Ok(_), AccessKind::Write(_)) => AccessOutcome::Written,
        }
    }
}

impl Machine for SimMachine {
    fn simulated(&self) -> bool {
        true
    }

    fn read(&mut self, pa: Pa) -> u64 {
        self.slot(pa).map_or(POISON, |(p, w)| self.cpu.read(p, w))
    }

    #[inline]
    fn read_pool(&mut self, page: usize, word: usize, _: Pa) -> u64 {
        self.cpu.read(page, word)
    }

    fn diff_page(&mut self, page: usize, shadow: &[u64; 512], out: &mut Vec<(usize, u64, u64)>) {
        self.cpu.diff_page(page, shadow, out);
    }

    fn write(&mut self, pa: Pa, value: u64) {
        if let Some((p, w)) = self.slot(pa) {
            self.cpu.write(p, w, value);
        }
    }

    fn fill_page(&mut self, pa: Pa, value: u64) {
        if let Some((p, _)) = self.slot(pa) {
            self.cpu.fill(p, value);
        }
    }

    fn clean(&mut self, pa: Pa, len: u64) {
        if !self.non_coherent {
            return;
        }
        let (start, end) = (pa.0 & !63, pa.0.saturating_add(len));
        let mut line = start;
        while line < end {
            if let Some((p, w)) = self.slot(Pa(line)) {
                // A whole uniform page cleans as a fill: no need to materialise it.
                if !self.cpu.dense[p] && w == 0 && end - line >= PAGE_SIZE {
                    self.poc.fill(p, self.cpu.fill[p]);
                    line += PAGE_SIZE;
                    continue;
                }
                for i in 0..8 {
                    let v = self.cpu.read(p, w + i);
                    self.poc.write(p, w + i, v);
                }
            }
            line += 64;
        }
    }

    fn tlbi(&mut self, op: Tlbi) {
        if self.tlb.is_empty() {
            return;
        }
        self.tlb.retain(|&(vmid, page), (leaf, kinds)| {
            let vmid = harness_core::arch::Vmid(vmid);
            for kind in [Cached::Stage2, Cached::Combined] {
                // An invalidation by IPA reaches everything cached from the leaf holding it.
                let covered = match op {
                    Tlbi::Ipas2 { vmid: v, ipa } => {
                        let size = level_size(leaf.level);
                        v == vmid && kind == Cached::Stage2 && page & !(size - 1) == ipa.0 & !(size - 1)
                    }
                    _ => op.covers(vmid, kind, Ipa(page)),
                };
                if covered {
                    *kinds &= !bit(kind);
                }
            }
            *kinds != 0
        });
    }

    fn dsb(&mut self) {}

    fn guest_access(
        &mut self,
        vttbr: Vttbr,
        ipa: Ipa,
        kind: AccessKind,
    ) -> (AccessOutcome, Option<AccessOutcome>) {
        self.tlb_hit = false;
        let cached = self.run_stub(vttbr, ipa, kind, true);
        let outcome = self.outcome(cached, kind);
        // The walk of the tables as written can only differ from what the machine did if
        // a TLB entry answered, or the walker reads the point of coherency.
        let fresh = if self.tlb_hit || self.non_coherent {
            let f = self.run_stub(vttbr, ipa, kind, false);
            Some(self.outcome(f, kind)).filter(|f| *f != outcome)
        } else {
            None
        };
        if let (Ok(pa), AccessKind::Write(value)) = (cached, kind) {
            self.stored.insert(pa.0, value);
        }
        (outcome, fresh)
    }

    fn reset(&mut self, config: &Config, geometry: &Geometry, pool_pages_used: usize) {
        self.layout = config.layout;
        self.geometry = *geometry;
        self.non_coherent = config.walker == Walker::NonCoherent;
        self.guest_s1 = config.guest == Guest::Identity;
        // A fresh boot: the pool reads as zero until something is allocated and freed.
        for p in 0..pool_pages_used.min(POOL_PAGES) {
            self.cpu.fill(p, 0);
            self.poc.fill(p, 0);
        }
        self.tlb.clear();
        self.stored.clear();
    }

    fn page_ptr(&mut self, page: usize) -> Option<NonNull<u64>> {
        (page < POOL_PAGES).then(|| NonNull::new(self.cpu.page(page)).expect("inside the allocation"))
    }
}

#[cfg(test)]
mod tests {
    use super::View;

    /// The comparison by runs of 8 words reports what a word-by-word one does, in order.
    #[test]
    fn diff_page_reports_every_changed_word_in_order() {
        let mut v = View::new();
        v.fill(3, 0);
        let mut shadow = [0u64; 512];
        for (w, value) in [(0, 1), (7, 2), (8, 3), (255, 4), (511, 5), (100, 6)] {
            v.write(3, w, value);
        }
        // Equal to the page at word 7, stale at 100 and 300.
        shadow[7] = 2;
        shadow[100] = 9;
        shadow[300] = 8;
        let want: Vec<(usize, u64, u64)> =
            (0..512).filter(|&w| shadow[w] != v.read(3, w)).map(|w| (w, shadow[w], v.read(3, w))).collect();
        let mut got = Vec::new();
        v.diff_page(3, &shadow, &mut got);
        assert_eq!(got, want);
        assert_eq!(got.iter().map(|d| d.0).collect::<Vec<_>>(), [0, 8, 100, 255, 300, 511]);
        // A page the same as its shadow reports nothing.
        let same: [u64; 512] = std::array::from_fn(|w| v.read(3, w));
        got.clear();
        v.diff_page(3, &same, &mut got);
        assert!(got.is_empty());
    }
}
