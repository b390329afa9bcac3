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
use std::collections::BTreeMap;

type Page = Box<[u64; 512]>;

/// The simulated machine.
pub struct SimMachine {
    layout: Layout,
    non_coherent: bool,
    /// Table memory as the CPU sees it; `None` reads as poison.
    cpu: Vec<Option<Page>>,
    /// Table memory at the point of coherency (non-coherent mode only).
    poc: Vec<Option<Page>>,
    /// Cached stage-2 translations by (VMID, IPA page).
    tlb: BTreeMap<(u8, u64), Leaf>,
    /// Guest words stored so far (others hold their signature).
    stored: BTreeMap<u64, u32>,
}

impl SimMachine {
    /// A machine for `config`.
    pub fn new(config: &Config) -> Self {
        let mut m = SimMachine {
            layout: config.layout,
            non_coherent: false,
            cpu: (0..POOL_PAGES).map(|_| None).collect(),
            poc: (0..POOL_PAGES).map(|_| None).collect(),
            tlb: BTreeMap::new(),
            stored: BTreeMap::new(),
        };
        m.reset(config, POOL_PAGES);
        m
    }

    fn slot(&self, pa: Pa) -> Option<(usize, usize)> {
        Some((self.layout.pool_index(pa)?, ((pa.0 % PAGE_SIZE) / 8) as usize))
    }

    /// What the table walker reads at `pa`.
    fn walker_read(&self, pa: Pa) -> u64 {
        let view = if self.non_coherent { &self.poc } else { &self.cpu };
        self.slot(pa).and_then(|(p, w)| view[p].as_ref().map(|page| page[w])).unwrap_or(POISON)
    }

    fn translate(&mut self, vmid: Vmid, root: Pa, ipa: u64, use_tlb: bool) -> Result<Leaf, harness_core::machine::Fault> {
        let key = (vmid.0, ipa & !(PAGE_SIZE - 1));
        if use_tlb {
            if let Some(leaf) = self.tlb.get(&key) {
                return Ok(*leaf);
            }
        }
        let leaf = walker::translate(&mut |a| self.walker_read(a), root, Ipa(ipa))?;
        if use_tlb {
            self.tlb.insert(key, leaf);
        }
        Ok(leaf)
    }

    /// The guest stub's access: stage-1 walk (reads the stub page), fetch, then the data
    /// access. With `use_tlb` false, every translation walks the current tables.
    fn run_stub(&mut self, vttbr: Vttbr, ipa: Ipa, kind: AccessKind, use_tlb: bool) -> Result<Pa, Abort> {
        let need_data = if matches!(kind, AccessKind::Write(_)) { Need::Write } else { Need::Read };
        let steps = [(STUB_IPA, AbortOn::S1Walk, Need::Read), (STUB_IPA, AbortOn::Fetch, Need::Execute), (ipa, AbortOn::Data, need_data)];
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
            (Ok(pa), AccessKind::Read) => AccessOutcome::Read(self.stored.get(&pa.0).copied().unwrap_or(Layout::signature(pa))),
            (Ok(_), AccessKind::Write(_)) => AccessOutcome::Written,
        }
    }
}

impl Machine for SimMachine {
    fn read(&mut self, pa: Pa) -> u64 {
        self.slot(pa).and_then(|(p, w)| self.cpu[p].as_ref().map(|page| page[w])).unwrap_or(POISON)
    }

    fn write(&mut self, pa: Pa, value: u64) {
        if let Some((p, w)) = self.slot(pa) {
            self.cpu[p].get_or_insert_with(|| Box::new([POISON; 512]))[w] = value;
        }
    }

    fn fill_page(&mut self, pa: Pa, value: u64) {
        if let Some((p, _)) = self.slot(pa) {
            match &mut self.cpu[p] {
                Some(page) => page.fill(value),
                None if value == POISON => {}
                slot => *slot = Some(Box::new([value; 512])),
            }
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
                let src: [u64; 8] = match &self.cpu[p] {
                    Some(page) => page[w..w + 8].try_into().unwrap_or([POISON; 8]),
                    None => [POISON; 8],
                };
                self.poc[p].get_or_insert_with(|| Box::new([POISON; 512]))[w..w + 8].copy_from_slice(&src);
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

    fn guest_access(&mut self, vttbr: Vttbr, ipa: Ipa, kind: AccessKind) -> (AccessOutcome, Option<AccessOutcome>) {
        let fresh = self.run_stub(vttbr, ipa, kind, false);
        let cached = self.run_stub(vttbr, ipa, kind, true);
        let (fresh, outcome) = (self.outcome(fresh, kind), self.outcome(cached, kind));
        if let (Ok(pa), AccessKind::Write(value)) = (cached, kind) {
            self.stored.insert(pa.0, value);
        }
        (outcome, (fresh != outcome).then_some(fresh))
    }

    fn reset(&mut self, config: &Config, pool_pages_used: usize) {
        self.layout = config.layout;
        self.non_coherent = config.walker == Walker::NonCoherent;
        for p in 0..pool_pages_used.min(POOL_PAGES) {
            self.cpu[p] = None;
            self.poc[p] = None;
        }
        self.tlb.clear();
        self.stored.clear();
    }
}
