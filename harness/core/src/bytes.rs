//! The fuzzers' byte encoding of op sequences (format version [`VERSION`]).
//!
//! Byte 0 is the configuration, so one campaign explores every configuration:
//! bit 0 a non-coherent walker, bit 1 strict break-before-make, bits 4:2 the VMID width
//! (an index into the target's widths: its widest first, then the narrowest up), bits 7:5
//! the target (modulo the number of targets). The environment may pin any of them
//! ([`Pins`]); a pinned field's bits are ignored.
//!
//! Then ops: each an opcode byte (a weighted table over the ops the target offers, so the
//! decoder never produces an op the target refuses) and operands. Address operands start
//! with a selector byte that mostly picks a page near an interesting address (table
//! boundaries, the ends of the target's IPA space, its middle, 4 GiB) and sometimes escapes
//! to a raw 8-byte value. Decoding is total: every byte string is a valid input (missing
//! bytes read as zero). [`Codec::encode`] inverts [`Codec::decode`].

use crate::arch::{Prot, PAGE_SIZE};
use crate::layout::{Layout, STUB_IPA};
use crate::op::{Op, Walker, OP_KINDS};
use crate::target::TargetInfo;
use alloc::vec::Vec;

/// Version of the byte format (2: configuration byte, targets, range ops).
pub const VERSION: u32 = 2;

/// Most ops a decoded sequence holds (longer inputs are cut).
pub const MAX_OPS: usize = 4096;

/// Each op kind's share of the opcode byte values, by [`Op::kind`]; a target's table
/// scales the shares of the kinds it offers to 256.
pub const WEIGHTS: [u16; OP_KINDS as usize] = [
    14, // create_vm
    3,  // destroy_vm: rare, its teardown scans every root entry
    14, // add_memslot
    4,  // remove_memslot
    6,  // topup
    43, // map
    24, // clear
    14, // ioremap
    16, // unmap_hva
    10, // unmap_hva_range
    14, // set_spte_hva
    18, // update_vmid
    12, // enter
    36, // read
    20, // write
    8,  // fail_alloc
    40, // map_range
    24, // unmap_range
    16, // protect_range
];

/// What byte 0 chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Index of the target.
    pub target: u8,
    /// Walker coherency.
    pub walker: Walker,
    /// Strict break-before-make.
    pub strict_bbm: bool,
    /// VMID width.
    pub vmid_bits: u8,
}

/// Fields of the configuration the environment fixes, whatever byte 0 says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pins {
    /// The target.
    pub target: Option<u8>,
    /// Walker coherency.
    pub walker: Option<Walker>,
    /// Strict break-before-make.
    pub strict_bbm: Option<bool>,
    /// VMID width.
    pub vmid_bits: Option<u8>,
}

/// IPAs near which the interesting pages lie, for an IPA space of `limit` bytes; selector
/// `s < 0xe0` means `base[s % 16] + (s / 16) * 4 KiB`, 14 consecutive pages per base. With
/// the 40-bit space of ARMv7 these are the table boundaries, the second root page, the ends.
pub fn ipa_bases(limit: u64) -> [u64; 16] {
    let half = limit / 2;
    [
        0,                      // the first IPA and its table
        0x1f_8000,              // crosses the first 2 MiB boundary at page 8
        0x3fff_8000,            // crosses 1 GiB
        half - 0x8000,          // crosses the middle: the second root page of ARMv7
        limit - 14 * 0x1000,    // the last page of the space is page 13
        0xffff_8000,            // crosses 4 GiB (the 32-bit PAGE_MASK)
        0x1_0000_0000,          // 4 GiB
        0x4000_0000,            // 1 GiB
        0x20_0000,              // 2 MiB
        half - (1 << 30),       // the last 1 GiB of the lower half
        half,                   // the middle
        0x12_3456_0000 % limit, // somewhere in the middle
        STUB_IPA.0,             // the guest stub (page 0, refused) and its level-3 neighbours
        0x40_0000,              // a second 2 MiB region
        limit - (1 << 30),      // the last 1 GiB
        0x8000_0000,            // 2 GiB
    ]
}

/// Host virtual addresses of memslots; selector `s < 0xf0` means
/// `HVA_BASES[s % 8] + (s / 8) * 4 KiB`.
pub const HVA_BASES: [u64; 8] =
    [0x7000_0000, 0x7020_0000, 0x7fff_8000, 0x1_0000_0000, 0, 0x7001_0000, 0x40_0000_0000, 0x7000_1000];

/// Memslot sizes in pages; selector `s < 0xf0` picks `SLOT_PAGES[s % 8]`.
pub const SLOT_PAGES: [u64; 8] = [1, 2, 16, 512, 513, 0x4_0000, 8, 0];

/// `ioremap` sizes; selector `s < 0xf0` picks `IOREMAP_SIZES[s % 8]`.
pub const IOREMAP_SIZES: [u64; 8] = [0x1000, 0x2000, 0x800, 0x1800, 0x4000, 0, 0x10000, 0x1001];

/// Range sizes of `map_range` and friends: pages, a 2 MiB block, a block and a page more
/// or less, two blocks.
pub const RANGE_SIZES: [u64; 8] = [0x1000, 0x2000, 0x20_0000, 0x10000, 0x1f_f000, 0x20_1000, 0x40_0000, 0];

/// A target's opcode table.
#[derive(Clone, Debug)]
pub struct OpTable {
    kind: [u8; 256],
    first: [u8; OP_KINDS as usize],
}

impl OpTable {
    /// The table of the kinds `info` offers, each with its share of [`WEIGHTS`].
    pub fn new(info: &TargetInfo) -> OpTable {
        let kinds: Vec<u8> = (0..OP_KINDS).filter(|&k| info.ops.has(k)).collect();
        let total: u32 = kinds.iter().map(|&k| u32::from(WEIGHTS[k as usize])).sum();
        let mut shares: Vec<u32> =
            kinds.iter().map(|&k| (u32::from(WEIGHTS[k as usize]) * 256 / total).max(1)).collect();
        // Rounding leftovers (or excess) go to the most common kind.
        let biggest = (0..shares.len()).max_by_key(|&i| (shares[i], usize::MAX - i)).unwrap_or(0);
        let sum: u32 = shares.iter().sum();
        shares[biggest] = (shares[biggest] + 256).saturating_sub(sum);
        let mut t = OpTable { kind: [0; 256], first: [0; OP_KINDS as usize] };
        let mut b = 0usize;
        for (&k, &n) in kinds.iter().zip(&shares) {
            t.first[k as usize] = b as u8;
            for _ in 0..n {
                if b < 256 {
                    t.kind[b] = k;
                    b += 1;
                }
            }
        }
        t
    }

    /// The op kind of an opcode byte.
    pub const fn kind(&self, byte: u8) -> u8 {
        self.kind[byte as usize]
    }

    /// The first opcode byte of kind `kind` (for generators that choose kinds themselves).
    pub const fn byte(&self, kind: u8) -> u8 {
        self.first[kind as usize % OP_KINDS as usize]
    }
}

/// The codec for a set of targets (the harness's registry).
pub struct Codec {
    targets: Vec<(&'static TargetInfo, OpTable)>,
}

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
    fn ipa(&mut self, bases: &[u64; 16]) -> u64 {
        match self.byte() {
            s @ 0..=0xdf => bases[usize::from(s % 16)] + u64::from(s / 16) * PAGE_SIZE,
            // Word-aligned offsets inside the page, for guest accesses.
            s @ 0xe0..=0xef => bases[usize::from(s % 16)] + u64::from(self.byte()) * 4,
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
            s @ 0..=0x7f => layout.guest_window().0 + u64::from(s % 64) * PAGE_SIZE,
            // The second 2 MiB of the guest window, where a second block fits.
            s @ 0x80..=0x9f => layout.guest_window().0 + 0x20_0000 + u64::from(s % 32) * PAGE_SIZE,
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
    fn prot(&mut self) -> Prot {
        match self.byte() % 3 {
            0 => Prot::RAM_RW,
            1 => Prot::RAM_RO,
            _ => Prot::DEVICE_RW,
        }
    }
}

/// The VMID widths byte 0 chooses from for `info`: its widest, then narrowest upward.
fn widths(info: &TargetInfo) -> Vec<u8> {
    let (lo, hi) = info.vmid_bits;
    let mut w = alloc::vec![hi];
    w.extend((lo..hi).filter(|b| [1, 2, 3, 4, 5, 6, 7, 8, 16].contains(b)));
    w
}

impl Codec {
    /// A codec for `targets` (index order is the registry's).
    pub fn new(targets: &[&'static TargetInfo]) -> Codec {
        Codec { targets: targets.iter().map(|t| (*t, OpTable::new(t))).collect() }
    }

    /// The opcode table of target `t`.
    pub fn table(&self, t: u8) -> &OpTable {
        &self.targets[usize::from(t) % self.targets.len()].1
    }

    /// Decodes bytes into a configuration choice and at most [`MAX_OPS`] ops. Never fails.
    pub fn decode(&self, data: &[u8], pins: &Pins, layout: &Layout) -> (Header, Vec<Op>) {
        let mut r = Reader { data };
        let h = r.byte();
        let (target, info, table) = self.target(h, pins);
        let w = widths(info);
        let header = Header {
            target,
            walker: match pins.walker.unwrap_or(if h & 1 != 0 {
                Walker::NonCoherent
            } else {
                Walker::Coherent
            }) {
                // Outside the target's contract: never chosen.
                _ if info.coherent_walker_only => Walker::Coherent,
                w => w,
            },
            strict_bbm: pins.strict_bbm.unwrap_or(h & 2 != 0),
            vmid_bits: pins.vmid_bits.unwrap_or(w[usize::from((h >> 2) & 7) % w.len()]),
        };
        let bases = ipa_bases(info.geometry.ipa_limit());
        let mut ops = Vec::new();
        while !r.data.is_empty() && ops.len() < MAX_OPS {
            ops.push(decode_op(&mut r, table, &bases, layout));
        }
        (header, ops)
    }

    /// The first op of what [`Codec::decode`] makes of `data`, without decoding the rest or
    /// the configuration (the generators draw one op at a time from a few random bytes).
    pub fn first_op(&self, data: &[u8], pins: &Pins, layout: &Layout) -> Option<Op> {
        let mut r = Reader { data };
        let (_, info, table) = self.target(r.byte(), pins);
        (!r.data.is_empty()).then(|| decode_op(&mut r, table, &ipa_bases(info.geometry.ipa_limit()), layout))
    }

    /// The target the configuration byte `h` chooses (unless pinned), with its opcode table.
    fn target(&self, h: u8, pins: &Pins) -> (u8, &'static TargetInfo, &OpTable) {
        let n = self.targets.len().max(1) as u8;
        let target = pins.target.unwrap_or((h >> 5) % n);
        let (info, table) = &self.targets[usize::from(target)];
        (target, info, table)
    }
}

fn decode_op(r: &mut Reader<'_>, table: &OpTable, bases: &[u64; 16], layout: &Layout) -> Op {
    let code = table.kind(r.byte());
    if code == 15 {
        return Op::FailAlloc { nth: u32::from(r.byte() % 64) };
    }
    let vm = r.byte() % 8;
    match code {
        0 => Op::CreateVm { vm },
        1 => Op::DestroyVm { vm },
        2 => {
            let slot = u16::from(r.byte() % 8);
            let gpa = r.ipa(bases);
            let pages = r.pick(&SLOT_PAGES);
            Op::AddMemslot { vm, slot, gpa, pages, hva: r.hva() }
        }
        3 => Op::RemoveMemslot { vm, slot: u16::from(r.byte() % 8) },
        4 => Op::Topup { vm, min: r.byte() % 48, max: r.byte() % 48 },
        5 => {
            let ipa = r.ipa(bases);
            let pa = r.pa(layout);
            Op::Map { vm, ipa, pa, writable: r.byte() & 1 == 0 }
        }
        6 => Op::Clear { vm, ipa: r.ipa(bases) },
        7 => {
            let ipa = r.ipa(bases);
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
        13 => Op::Read { vm, ipa: r.ipa(bases) },
        14 => {
            let ipa = r.ipa(bases);
            Op::Write { vm, ipa, value: r.u32() }
        }
        16 => {
            let ipa = r.ipa(bases);
            let pa = r.pa(layout);
            let size = r.pick(&RANGE_SIZES);
            Op::MapRange { vm, ipa, pa, size, prot: r.prot() }
        }
        17 => {
            let ipa = r.ipa(bases);
            Op::UnmapRange { vm, ipa, size: r.pick(&RANGE_SIZES) }
        }
        _ => {
            let ipa = r.ipa(bases);
            let size = r.pick(&RANGE_SIZES);
            Op::ProtectRange { vm, ipa, size, prot: r.prot() }
        }
    }
}

impl Codec {
    /// Encodes a configuration choice and a sequence so that [`Codec::decode`] (without pins)
    /// gives them back (up to [`MAX_OPS`] ops). Fields outside the byte format's ranges (a
    /// VM id of 8 or more, a slot id of 8 or more, topup bounds of 48 or more, `fail_alloc`
    /// beyond 63, a protection without a word) are clamped the way decoding reads them;
    /// ops the target does not offer are left out.
    pub fn encode(&self, h: &Header, ops: &[Op], layout: &Layout) -> Vec<u8> {
        let t = usize::from(h.target) % self.targets.len();
        let (info, table) = &self.targets[t];
        let w = widths(info);
        let width = w.iter().position(|&b| b == h.vmid_bits).unwrap_or(0) as u8;
        let first = u8::from(h.walker == Walker::NonCoherent)
            | u8::from(h.strict_bbm) << 1
            | width << 2
            | (t as u8) << 5;
        let mut out = Writer { out: alloc::vec![first], bases: ipa_bases(info.geometry.ipa_limit()) };
        for op in ops.iter().filter(|op| info.offers(op)).take(MAX_OPS) {
            out.op(op, table, layout);
        }
        out.out
    }
}

struct Writer {
    out: Vec<u8>,
    bases: [u64; 16],
}

impl Writer {
    fn raw(&mut self, escape: u8, v: u64) {
        self.out.push(escape);
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn ipa(&mut self, v: u64) {
        for (i, base) in self.bases.iter().enumerate() {
            let Some(off) = v.checked_sub(*base) else { continue };
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
            let Some(off) = v.checked_sub(*base) else { continue };
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
        } else if let Some(k) = frame(layout.guest_window().0 + 0x20_0000, 32) {
            self.out.push(0x80 + k as u8);
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
    fn prot(&mut self, p: Prot) {
        self.out.push(match p {
            Prot::RAM_RO => 1,
            Prot::DEVICE_RW => 2,
            _ => 0,
        });
    }
    fn op(&mut self, op: &Op, table: &OpTable, layout: &Layout) {
        self.out.push(table.byte(op.kind()));
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
            Op::MapRange { ipa, pa, size, prot, .. } => {
                self.ipa(ipa);
                self.pa(pa, layout);
                self.pick(&RANGE_SIZES, size);
                self.prot(prot);
            }
            Op::UnmapRange { ipa, size, .. } => {
                self.ipa(ipa);
                self.pick(&RANGE_SIZES, size);
            }
            Op::ProtectRange { ipa, size, prot, .. } => {
                self.ipa(ipa);
                self.pick(&RANGE_SIZES, size);
                self.prot(prot);
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
    fn the_40_bit_bases_are_the_seeds_boundaries() {
        let b = ipa_bases(1 << 40);
        assert_eq!(b[3], 0x7f_ffff_8000);
        assert_eq!(b[4], 0xff_ffff_2000);
        assert_eq!(b[9], 0x7f_c000_0000);
        assert_eq!(b[10], 0x80_0000_0000);
        assert_eq!(b[11], 0x12_3456_0000);
        assert_eq!(b[14], 0xff_c000_0000);
        assert_eq!(b[4] + 13 * PAGE_SIZE, (1 << 40) - PAGE_SIZE);
    }
}
