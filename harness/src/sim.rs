//! The simulated machine: sparse table memory with a point-of-coherency view, a per-VMID TLB
//! that keeps every translation until invalidated, and guest accesses walked the way the
//! ARM image's guest stub performs them (stage-1 walk and fetch through the stub page, then
//! the access). Small and boring on purpose; the checking lives in the shared core.

use harness_core::layout::{Layout, POISON, POOL_PAGES, STUB_IPA};
use harness_core::machine::{Abort, AbortOn, AccessKind, AccessOutcome, Machine};
use harness_core::op::{Config, Walker};
use harness_core::walker::{self, Leaf, Need};
use mmu::addr::PAGE_SIZE;
use mmu::{Ipa, Pa, Vmid, Vttbr};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

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
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Pool memory: a page is either uniformly filled (a fresh allocation, a freed page) or
/// materialised in a slot of a flat array on its first partial write. Allocation, free and
/// reset cost O(1) per page; the array grows with the pages actually written (a fresh
/// machine allocates no page storage, and slots of refilled pages are reused).
struct View {
    data: Vec<u64>,
    fill: Vec<u64>,
    /// The page's slot in `data`, or [`View::UNIFORM`].
    slot: Vec<u32>,
    /// Slots of pages that went back to uniform.
    spare: Vec<u32>,
}

impl View {
    const UNIFORM: u32 = u32::MAX;

    fn new() -> Self {
        View {
            data: Vec::new(),
            fill: vec![POISON; POOL_PAGES],
            slot: vec![Self::UNIFORM; POOL_PAGES],
            spare: Vec::new(),
        }
    }
    #[inline]
    fn dense(&self, p: usize) -> bool {
        self.slot[p] != Self::UNIFORM
    }
    #[inline]
    fn read(&self, p: usize, w: usize) -> u64 {
        match self.slot[p] {
            Self::UNIFORM => self.fill[p],
            s => self.data[s as usize * 512 + w],
        }
    }
    fn page_mut(&mut self, p: usize) -> &mut [u64] {
        if self.slot[p] == Self::UNIFORM {
            let s = self.spare.pop().unwrap_or_else(|| {
                self.data.resize(self.data.len() + 512, 0);
                (self.data.len() / 512 - 1) as u32
            });
            self.data[s as usize * 512..][..512].fill(self.fill[p]);
            self.slot[p] = s;
        }
        let s = self.slot[p] as usize;
        &mut self.data[s * 512..(s + 1) * 512]
    }
    fn fill(&mut self, p: usize, value: u64) {
        let s = core::mem::replace(&mut self.slot[p], Self::UNIFORM);
        if s != Self::UNIFORM {
            self.spare.push(s);
        }
        self.fill[p] = value;
    }
}

/// The simulated machine.
pub struct SimMachine {
    layout: Layout,
    non_coherent: bool,
    /// Table memory as the CPU sees it.
    cpu: View,
    /// Table memory at the point of coherency (non-coherent mode only).
    poc: View,
    /// Cached stage-2 translations by (VMID, IPA page). Never iterated into anything
    /// recorded, so a hash map is fine here.
    tlb: HashMap<(u8, u64), Leaf, BuildHasherDefault<WordHasher>>,
    /// Guest words stored so far (others hold their signature).
    stored: BTreeMap<u64, u32>,
    /// A TLB entry answered a translation of the current access.
    tlb_hit: bool,
}

impl SimMachine {
    /// A machine for `config`.
    pub fn new(config: &Config) -> Self {
        let mut m = SimMachine {
            layout: config.layout,
            non_coherent: false,
            cpu: View::new(),
            poc: View::new(),
            tlb: HashMap::default(),
            stored: BTreeMap::new(),
            tlb_hit: false,
        };
        m.reset(config, POOL_PAGES);
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

    fn translate(
        &mut self,
        vmid: Vmid,
        root: Pa,
        ipa: u64,
        use_tlb: bool,
    ) -> Result<Leaf, harness_core::machine::Fault> {
        let key = (vmid.0, ipa & !(PAGE_SIZE - 1));
        if use_tlb {
            if let Some(leaf) = self.tlb.get(&key) {
                self.tlb_hit = true;
                return Ok(*leaf);
            }
        }
        let leaf = walker::translate(&mut |a| self.walker_read(a, use_tlb), root, Ipa(ipa))?;
        if use_tlb {
            self.tlb.insert(key, leaf);
        }
        Ok(leaf)
    }

    /// The guest stub's access: stage-1 walk (reads the stub page), fetch, then the data
    /// access. With `use_tlb` false, every translation walks the tables as the CPU wrote
    /// them: no TLB, and no point-of-coherency lag.
    fn run_stub(&mut self, vttbr: Vttbr, ipa: Ipa, kind: AccessKind, use_tlb: bool) -> Result<Pa, Abort> {
        let need_data = if matches!(kind, AccessKind::Write(_)) { Need::Write } else { Need::Read };
        let steps = [
            (STUB_IPA, AbortOn::S1Walk, Need::Read),
            (STUB_IPA, AbortOn::Fetch, Need::Execute),
            (ipa, AbortOn::Data, need_data),
        ];
        let mut pa = Pa(0);
        for (at, on, need) in steps {
            let leaf = self
                .translate(vttbr.vmid(), vttbr.root(), at.0, use_tlb)
                .and_then(|leaf| walker::permit(&leaf, need).map(|()| leaf))
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
    fn read(&mut self, pa: Pa) -> u64 {
        self.slot(pa).map_or(POISON, |(p, w)| self.cpu.read(p, w))
    }

    #[inline]
    fn read_pool(&mut self, page: usize, word: usize, _: Pa) -> u64 {
        self.cpu.read(page, word)
    }

    fn write(&mut self, pa: Pa, value: u64) {
        if let Some((p, w)) = self.slot(pa) {
            self.cpu.page_mut(p)[w] = value;
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
                if !self.cpu.dense(p) && w == 0 && end - line >= PAGE_SIZE {
                    self.poc.fill(p, self.cpu.fill[p]);
                    line += PAGE_SIZE;
                    continue;
                }
                let src: [u64; 8] = core::array::from_fn(|i| self.cpu.read(p, w + i));
                self.poc.page_mut(p)[w..w + 8].copy_from_slice(&src);
            }
            line += 64;
        }
    }

    fn tlbi_vmid(&mut self, vmid: Vmid) {
        self.tlb.retain(|(v, _), _| *v != vmid.0);
    }

    fn tlbi_all(&mut self) {
        self.tlb.clear();
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

    fn reset(&mut self, config: &Config, pool_pages_used: usize) {
        self.layout = config.layout;
        self.non_coherent = config.walker == Walker::NonCoherent;
        // A fresh boot: the pool reads as zero until something is allocated and freed.
        for p in 0..pool_pages_used.min(POOL_PAGES) {
            self.cpu.fill(p, 0);
            self.poc.fill(p, 0);
        }
        self.tlb.clear();
        self.stored.clear();
    }
}
