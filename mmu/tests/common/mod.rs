//! A small in-memory platform for the crate's own tests: sparse memory, kernel-like
//! refcounts, fault injection and a log of what the table code did. Misuse (touching a page
//! that is not allocated, double free) is recorded rather than panicking, so defect tests can
//! assert on it.
#![allow(dead_code)]

use mmu::{Descriptor, Pa, Platform, Vmid, Warning};
use std::collections::{BTreeMap, BTreeSet};

pub const BASE: u64 = 0x4100_0000;
pub const PAGES: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Alloc(u64, u32),
    Free(u64, u32),
    Write(u64, u64, u64),
    Clean(u64, u64),
    Flush(u8),
    FlushAll,
    Dsb,
}

#[derive(Default)]
pub struct TestPlatform {
    mem: BTreeMap<u64, Box<[u64; 512]>>,
    count: BTreeMap<u64, u32>,
    allocated: BTreeSet<u64>,
    /// Fail the allocation after this many more succeed.
    pub fail_after: Option<usize>,
    pub log: Vec<Ev>,
    pub warnings: Vec<Warning>,
    pub misuse: Vec<String>,
}

impl TestPlatform {
    pub fn new() -> Self {
        Self::default()
    }

    fn check(&mut self, pa: u64, what: &str) {
        if !self.allocated.contains(&(pa & !0xfff)) {
            self.misuse.push(format!("{what} of unallocated page {:#x}", pa & !0xfff));
        }
    }

    pub fn count_of(&self, pa: Pa) -> u32 {
        *self.count.get(&pa.page().0).unwrap_or(&0)
    }

    pub fn is_allocated(&self, pa: Pa) -> bool {
        self.allocated.contains(&pa.page().0)
    }

    pub fn allocated_pages(&self) -> usize {
        self.allocated.len()
    }

    pub fn peek(&self, pa: u64) -> Descriptor {
        Descriptor(self.mem.get(&(pa & !0xfff)).map_or(0, |p| p[((pa & 0xfff) / 8) as usize]))
    }

    pub fn flushes(&self) -> usize {
        self.log.iter().filter(|e| matches!(e, Ev::Flush(_))).count()
    }

    pub fn flush_alls(&self) -> usize {
        self.log.iter().filter(|e| matches!(e, Ev::FlushAll)).count()
    }

    /// Number of valid entries in the table page at `pa` (`entries` of them).
    pub fn valid_entries(&self, pa: Pa, entries: usize) -> u32 {
        (0..entries as u64).filter(|i| self.peek(pa.0 + i * 8).is_valid()).count() as u32
    }

    /// Software walk: the level-3 descriptor for `ipa`, or the level where the walk stopped.
    pub fn translate(&self, root: Pa, ipa: u64) -> Result<Descriptor, u8> {
        let mut table = root.0;
        for level in 1..=3u8 {
            let shift = 12 + 9 * (3 - level) as u64;
            let mask = if level == 1 { 1023 } else { 511 };
            let d = self.peek(table + ((ipa >> shift) & mask) * 8);
            if !d.is_valid() {
                return Err(level);
            }
            if level == 3 {
                return Ok(d);
            }
            table = d.output_address().0;
        }
        unreachable!()
    }
}

impl Platform for TestPlatform {
    fn alloc_pages(&mut self, order: u32) -> Option<Pa> {
        if let Some(n) = self.fail_after.as_mut() {
            if *n == 0 {
                self.fail_after = None;
                return None;
            }
            *n -= 1;
        }
        let n = 1u64 << order;
        let mut pa = BASE;
        while pa < BASE + PAGES * 4096 {
            if (0..n).all(|i| !self.allocated.contains(&(pa + i * 4096))) {
                for i in 0..n {
                    self.allocated.insert(pa + i * 4096);
                    self.mem.insert(pa + i * 4096, Box::new([0; 512]));
                    self.count.insert(pa + i * 4096, u32::from(i == 0));
                }
                self.log.push(Ev::Alloc(pa, order));
                return Some(Pa(pa));
            }
            pa += n * 4096;
        }
        None
    }

    fn free_pages(&mut self, pa: Pa, order: u32) {
        for i in 0..1u64 << order {
            let page = pa.0 + i * 4096;
            if !self.allocated.remove(&page) {
                self.misuse.push(format!("double free of {page:#x}"));
            }
            self.mem.remove(&page);
        }
        self.log.push(Ev::Free(pa.0, order));
    }

    fn get_page(&mut self, pa: Pa) {
        self.check(pa.0, "get");
        *self.count.entry(pa.page().0).or_default() += 1;
    }

    fn put_page(&mut self, pa: Pa) {
        self.check(pa.0, "put");
        let c = self.count.entry(pa.page().0).or_default();
        *c = c.saturating_sub(1);
        if *c == 0 {
            self.free_pages(pa.page(), 0);
        }
    }

    fn page_count(&mut self, pa: Pa) -> u32 {
        self.check(pa.0, "page_count");
        self.count_of(pa)
    }

    fn read_desc(&mut self, pa: Pa) -> Descriptor {
        self.check(pa.0, "read");
        self.peek(pa.0)
    }

    fn write_desc(&mut self, pa: Pa, desc: Descriptor) {
        self.check(pa.0, "write");
        let old = self.peek(pa.0).0;
        if let Some(p) = self.mem.get_mut(&pa.page().0) {
            p[(pa.page_offset() / 8) as usize] = desc.0;
        }
        self.log.push(Ev::Write(pa.0, old, desc.0));
    }

    fn clean_dcache(&mut self, pa: Pa, len: u64) {
        self.log.push(Ev::Clean(pa.0, len));
    }

    fn tlb_flush_vmid(&mut self, vmid: Vmid) {
        self.log.push(Ev::Flush(vmid.0));
    }

    fn tlb_flush_all(&mut self) {
        self.log.push(Ev::FlushAll);
    }

    fn dsb(&mut self) {
        self.log.push(Ev::Dsb);
    }

    fn warn(&mut self, warning: Warning) {
        self.warnings.push(warning);
    }
}
