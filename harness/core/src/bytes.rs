//! The fuzzers' byte encoding of op sequences (format version [`VERSION`]).
//!
//! Decoding is total: every byte string is a valid sequence (missing bytes read as zero).
//! Each op is an opcode byte (a weighted table, so common ops take more of the byte space)
//! followed by operands. Address operands start with a selector byte that mostly picks a
//! page near an interesting address (table boundaries, the ends of the IPA space, the second
//! root page, 4 GiB) and sometimes escapes to a raw 8-byte value, so the fuzzer reaches edge
//! cases fast yet can still say anything. [`encode`] inverts [`decode`]:
//! `decode(encode(ops)) == ops` for every op sequence.

use crate::layout::{Layout, STUB_IPA};
use crate::op::Op;
use alloc::vec::Vec;
use mmu::addr::PAGE_SIZE;

/// Version of the byte format.
pub const VERSION: u32 = 1;

/// Most ops a decoded sequence holds (longer inputs are cut).
pub const MAX_OPS: usize = 4096;

/// Opcodes and their share of the 256 opcode byte values.
const WEIGHTS: [(u8, u8); 16] = [
    (0, 14),  // create_vm
    (1, 3),   // destroy_vm: rare, its teardown scans every root entry
    (2, 14),  // add_memslot
    (3, 4),   // remove_memslot
    (4, 6),   // topup
    (5, 43),  // map
    (6, 24),  // clear
    (7, 14),  // ioremap
    (8, 16),  // unmap_hva
    (9, 10),  // unmap_hva_range
    (10, 14), // set_spte_hva
    (11, 18), // update_vmid
    (12, 12), // enter
    (13, 36), // read
    (14, 20), // write
    (15, 8),  // fail_alloc
];

const fn opcode_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let (mut i, mut b) = (0, 0);
    while i < WEIGHTS.len() {
        let mut n = 0;
        while n < WEIGHTS[i].1 {
            t[b] = WEIGHTS[i].0;
            b += 1;
            n += 1;
        }
        i += 1;
    }
    assert!(b == 256, "weights must fill the byte");
    t
}

const OPCODE: [u8; 256] = opcode_table();

/// IPAs near which the interesting pages lie; selector `s < 0xe0` means
/// `IPA_BASES[s % 16] + (s / 16) * 4 KiB`, 14 consecutive pages per base.
pub const IPA_BASES: [u64; 16] = [
    0,              // the first IPA and its table
    0x1f_8000,      // crosses the first 2 MiB boundary at page 8
    0x3fff_8000,    // crosses 1 GiB
    0x7f_ffff_8000, // crosses 2^39: the second root page
    0xff_ffff_2000, // the last page of the 40-bit space is page 13
    0xffff_8000,    // crosses 4 GiB (the 32-bit PAGE_MASK)
    0x1_0000_0000,  // 4 GiB
    0x4000_0000,    // 1 GiB
    0x20_0000,      // 2 MiB
    0x7f_c000_0000, // the last entry of the first root page
    0x80_0000_0000, // 2^39
    0x12_3456_0000, // somewhere in the middle
    STUB_IPA.0,     // the guest stub (page 0, refused) and its level-3 neighbours
    0x40_0000,      // a second 2 MiB region
    0xff_c000_0000, // the last 1 GiB
    0x8000_0000,    // 2 GiB
];

/// Host virtual addresses of memslots; selector `s < 0xf0` means
/// `HVA_BASES[s % 8] + (s / 8) * 4 KiB`.
pub const HVA_BASES: [u64; 8] =
    [0x7000_0000, 0x7020_0000, 0x7fff_8000, 0x1_0000_0000, 0, 0x7001_0000, 0x40_0000_0000, 0x7000_1000];

/// Memslot sizes in pages; selector `s < 0xf0` picks `SLOT_PAGES[s % 8]`.
pub const SLOT_PAGES: [u64; 8] = [1, 2, 16, 512, 513, 0x4_0000, 8, 0];

/// `ioremap` sizes; selector `s < 0xf0` picks `IOREMAP_SIZES[s % 8]`.
pub const IOREMAP_SIZES: [u64; 8] = [0x1000, 0x2000, 0x800, 0x1800, 0x4000, 0, 0x10000, 0x1001];

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn raw(&mut self) -> u64 {
        u64::from_le_bytes(core::array::from_fn(|_| self.byte()))
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(core::array::from_fn(|_| self.byte()))
    }
    fn ipa(&mut self) -> u64 {
        match self.byte() {
            s @ 0..=0xdf => IPA_BASES[usize::from(s % 16)] + u64::from(s / 16) * PAGE_SIZE,
            // Word-aligned offsets inside the page, for guest accesses.
            s @ 0xe0..=0xef => IPA_BASES[usize::from(s % 16)] + u64::from(self.byte()) * 4,
            _ => self.raw(),
        }
    }
    fn hva(&mut self) -> u64 {
        match self.byte() {
            s @ 0..=0xef => HVA_BASES[usize::from(s % 8)] + u64::from(s / 8) * PAGE_SIZE,
            _ => self.raw(),
        }
    }
    fn pa(&mut self, layout: &Layout) -> u64 {
        match self.byte() {
            s @ 0..=0x9f => layout.guest_window().0 + u64::from(s % 64) * PAGE_SIZE,
            s @ 0xa0..=0xef => layout.device_window().0 + u64::from(s % 16) * PAGE_SIZE,
            _ => self.raw(),
        }
    }
    fn pick(&mut self, table: &[u64; 8]) -> u64 {
        match self.byte() {
            s @ 0..=0xef => table[usize::from(s % 8)],
            _ => self.raw(),
        }
    }
}

/// Number of op kinds in the opcode table.
pub const OP_KINDS: u8 = 16;

/// The first opcode byte that decodes to op kind `kind` (0..[`OP_KINDS`]), for generators
/// that choose kinds themselves.
pub fn opcode_byte(kind: u8) -> u8 {
    FIRST_BYTE[usize::from(kind % OP_KINDS)]
}

const fn first_bytes() -> [u8; OP_KINDS as usize] {
    let mut t = [0u8; OP_KINDS as usize];
    let mut b = 256;
    while b > 0 {
        b -= 1;
        t[OPCODE[b] as usize] = b as u8;
    }
    t
}

const FIRST_BYTE: [u8; OP_KINDS as usize] = first_bytes();

/// Decodes bytes into a sequence of at most [`MAX_OPS`] ops. Never fails.
pub fn decode(data: &[u8], layout: &Layout) -> Vec<Op> {
    let mut r = Reader { data };
    let mut ops = Vec::new();
    while !r.data.is_empty() && ops.len() < MAX_OPS {
        ops.push(decode_op(&mut r, layout));
    }
    ops
}

fn decode_op(r: &mut Reader<'_>, layout: &Layout) -> Op {
    let code = OPCODE[usize::from(r.byte())];
    if code == 15 {
        return Op::FailAlloc { nth: u32::from(r.byte() % 64) };
    }
    let vm = r.byte() % 8;
    match code {
        0 => Op::CreateVm { vm },
        1 => Op::DestroyVm { vm },
        2 => {
            let slot = u16::from(r.byte() % 8);
            let gpa = r.ipa();
            let pages = r.pick(&SLOT_PAGES);
            Op::AddMemslot { vm, slot, gpa, pages, hva: r.hva() }
        }
        3 => Op::RemoveMemslot { vm, slot: u16::from(r.byte() % 8) },
        4 => Op::Topup { vm, min: r.byte() % 48, max: r.byte() % 48 },
        5 => {
            let ipa = r.ipa();
            let pa = r.pa(layout);
            Op::Map { vm, ipa, pa, writable: r.byte() & 1 == 0 }
        }
        6 => Op::Clear { vm, ipa: r.ipa() },
        7 => {
            let ipa = r.ipa();
            let pa = r.pa(layout);
            Op::Ioremap { vm, ipa, pa, size: r.pick(&IOREMAP_SIZES) }
        }
        8 => Op::UnmapHva { vm, hva: r.hva() },
        9 => {
            let start = r.hva();
            Op::UnmapHvaRange { vm, start, end: r.hva() }
        }
        10 => {
            let hva = r.hva();
            Op::SetSpteHva { vm, hva, pa: r.pa(layout) }
        }
        11 => Op::UpdateVmid { vm },
        12 => Op::Enter { vm },
        13 => Op::Read { vm, ipa: r.ipa() },
        _ => {
            let ipa = r.ipa();
            Op::Write { vm, ipa, value: r.u32() }
        }
    }
}

/// Encodes a sequence so that [`decode`] gives it back (up to [`MAX_OPS`] ops). Ops whose
/// fields do not fit the byte format's ranges (a VM id of 8 or more, a slot id of 8 or more,
/// topup bounds of 48 or more, `fail_alloc` beyond 63) are clamped the way decoding would
/// read them; every op the decoder produces round-trips exactly.
pub fn encode(ops: &[Op], layout: &Layout) -> Vec<u8> {
    let mut w = Writer { out: Vec::with_capacity(ops.len() * 4) };
    for op in ops.iter().take(MAX_OPS) {
        w.op(op, layout);
    }
    w.out
}

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn opcode(&mut self, code: u8) {
        self.out.push(opcode_byte(code));
    }
    fn raw(&mut self, escape: u8, v: u64) {
        self.out.push(escape);
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn ipa(&mut self, v: u64) {
        for (i, base) in IPA_BASES.iter().enumerate() {
            let Some(off) = v.checked_sub(*base) else {
                continue;
            };
            if off % PAGE_SIZE == 0 && off / PAGE_SIZE < 14 {
                return self.out.push((off / PAGE_SIZE * 16) as u8 + i as u8);
            }
            if off % 4 == 0 && off / 4 < 256 {
                return self.out.extend_from_slice(&[0xe0 + i as u8, (off / 4) as u8]);
            }
        }
        self.raw(0xff, v);
    }
    fn hva(&mut self, v: u64) {
        for (i, base) in HVA_BASES.iter().enumerate() {
            let Some(off) = v.checked_sub(*base) else {
                continue;
            };
            if off % PAGE_SIZE == 0 && off / PAGE_SIZE < 30 {
                return self.out.push((off / PAGE_SIZE * 8) as u8 + i as u8);
            }
        }
        self.raw(0xff, v);
    }
    fn pa(&mut self, v: u64, layout: &Layout) {
        let frame = |base: u64, n: u64| {
            v.checked_sub(base).filter(|o| o % PAGE_SIZE == 0 && o / PAGE_SIZE < n).map(|o| o / PAGE_SIZE)
        };
        if let Some(k) = frame(layout.guest_window().0, 64) {
            self.out.push(k as u8);
        } else if let Some(k) = frame(layout.device_window().0, 16) {
            self.out.push(0xa0 + k as u8);
        } else {
            self.raw(0xff, v);
        }
    }
    fn pick(&mut self, table: &[u64; 8], v: u64) {
        match table.iter().position(|&t| t == v) {
            Some(i) => self.out.push(i as u8),
            None => self.raw(0xff, v),
        }
    }
    fn op(&mut self, op: &Op, layout: &Layout) {
        let code = match op {
            Op::CreateVm { .. } => 0,
            Op::DestroyVm { .. } => 1,
            Op::AddMemslot { .. } => 2,
            Op::RemoveMemslot { .. } => 3,
            Op::Topup { .. } => 4,
            Op::Map { .. } => 5,
            Op::Clear { .. } => 6,
            Op::Ioremap { .. } => 7,
            Op::UnmapHva { .. } => 8,
            Op::UnmapHvaRange { .. } => 9,
            Op::SetSpteHva { .. } => 10,
            Op::UpdateVmid { .. } => 11,
            Op::Enter { .. } => 12,
            Op::Read { .. } => 13,
            Op::Write { .. } => 14,
            Op::FailAlloc { .. } => 15,
        };
        self.opcode(code);
        if let Op::FailAlloc { nth } = op {
            return self.out.push((*nth % 64) as u8);
        }
        self.out.push(op.vm().unwrap_or(0) % 8);
        match *op {
            Op::AddMemslot { slot, gpa, pages, hva, .. } => {
                self.out.push((slot % 8) as u8);
                self.ipa(gpa);
                self.pick(&SLOT_PAGES, pages);
                self.hva(hva);
            }
            Op::RemoveMemslot { slot, .. } => self.out.push((slot % 8) as u8),
            Op::Topup { min, max, .. } => self.out.extend_from_slice(&[min % 48, max % 48]),
            Op::Map { ipa, pa, writable, .. } => {
                self.ipa(ipa);
                self.pa(pa, layout);
                self.out.push(u8::from(!writable));
            }
            Op::Clear { ipa, .. } | Op::Read { ipa, .. } => self.ipa(ipa),
            Op::Ioremap { ipa, pa, size, .. } => {
                self.ipa(ipa);
                self.pa(pa, layout);
                self.pick(&IOREMAP_SIZES, size);
            }
            Op::UnmapHva { hva, .. } => self.hva(hva),
            Op::UnmapHvaRange { start, end, .. } => {
                self.hva(start);
                self.hva(end);
            }
            Op::SetSpteHva { hva, pa, .. } => {
                self.hva(hva);
                self.pa(pa, layout);
            }
            Op::Write { ipa, value, .. } => {
                self.ipa(ipa);
                self.out.extend_from_slice(&value.to_le_bytes());
            }
            Op::CreateVm { .. }
            | Op::DestroyVm { .. }
            | Op::UpdateVmid { .. }
            | Op::Enter { .. }
            | Op::FailAlloc { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_is_reachable() {
        for code in 0..16u8 {
            assert!(OPCODE.contains(&code), "opcode {code}");
        }
    }

    #[test]
    fn empty_and_short_inputs_decode() {
        let l = Layout::default();
        assert!(decode(&[], &l).is_empty());
        assert_eq!(decode(&[0], &l), [Op::CreateVm { vm: 0 }]);
        let map = OPCODE.iter().position(|&c| c == 5).unwrap() as u8;
        // Missing operands read as zero: IPA selector 0 is IPA 0, PA selector 0 is the first frame.
        assert_eq!(decode(&[map], &l), [Op::Map { vm: 0, ipa: 0, pa: l.guest_window().0, writable: true }]);
    }

    #[test]
    fn interesting_pages_decode_to_their_boundaries() {
        let l = Layout::default();
        let read = OPCODE.iter().position(|&c| c == 13).unwrap() as u8;
        let page = |sel: u8| match decode(&[read, 0, sel], &l)[0] {
            Op::Read { ipa, .. } => ipa,
            _ => unreachable!(),
        };
        assert_eq!(page(1 + 8 * 16), 0x20_0000);
        assert_eq!(page(2 + 8 * 16), 0x4000_0000);
        assert_eq!(page(3 + 8 * 16), 1 << 39);
        assert_eq!(page(4 + 13 * 16), (1 << 40) - PAGE_SIZE);
        assert_eq!(page(5 + 8 * 16), 1 << 32);
        assert_eq!(page(12), STUB_IPA.0);
        assert_eq!(page(12 + 16), STUB_IPA.0 + PAGE_SIZE);
    }
}
