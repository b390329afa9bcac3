//! The structure-aware mutator of the `ops` fuzz target (libFuzzer's `fuzz_mutator!` and
//! `fuzz_crossover!`): the naive generator's strength inside the fuzzer. An input is decoded
//! as the target sees it (with the campaign's pins), changed as a sequence, and encoded back
//! with the byte codec, which inverts the decoder:
//!
//! - generate a whole sequence (a fresh configuration byte and 1 to 64 ops), as the naive
//!   generator does, from the same distribution: always for an empty input, so a campaign
//!   from nothing starts as fast as random testing, and now and then later;
//! - generate one op or a run of ops, half of them *related*: on the VM and address of an
//!   op already there (a read after a map, an unmap over a mapped page), or on a memslot
//!   already added (its first or last page, its removal, the notifier over all of it, a
//!   neighbour right after it); one in 16 with an output address at the edge of what a
//!   descriptor holds (where a crate that does not check output addresses wraps);
//! - delete ops or runs, copy a run elsewhere (a splice at op boundaries), swap ops;
//! - move one operand toward an interesting address: another op's address, the next or
//!   previous page, the enclosing 2 MiB or 1 GiB boundary, or one of the codec's bases; an
//!   output address to another op's frame or to the edge of what a descriptor can hold;
//! - change the configuration byte (walker, BBM mode, VMID width, target);
//! - crossover: one input's ops up to a point, then another's.
//!
//! A share of the steps is libFuzzer's own byte mutation. `STAGEHAND_MUTATOR=bytes` leaves
//! every step to it (measured against this in `bench/ttb.md`).

use crate::fuzz::{codec, Campaign};
use harness_core::arch::PAGE_SIZE;
use harness_core::bytes::{ipa_bases, Header, Pins};
use harness_core::op::Op;
use harness_core::Layout;
use std::sync::OnceLock;

/// Whether the op level is on (unless `STAGEHAND_MUTATOR=bytes`).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("STAGEHAND_MUTATOR").map_or(true, |v| v != "bytes"))
}

/// A small deterministic generator seeded by libFuzzer ([`crate::fuzz::splitmix64`], as the
/// naive generator draws).
struct Rng(u64);

impl Rng {
    /// A generator from libFuzzer's 32-bit seed.
    fn seeded(seed: u32) -> Rng {
        Rng(u64::from(seed))
    }
    fn next(&mut self) -> u64 {
        crate::fuzz::splitmix64(&mut self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn ipa_mut(op: &mut Op) -> Option<&mut u64> {
    match op {
        Op::AddMemslot { gpa: ipa, .. }
        | Op::Map { ipa, .. }
        | Op::Clear { ipa, .. }
        | Op::Ioremap { ipa, .. }
        | Op::Read { ipa, .. }
        | Op::Write { ipa, .. }
        | Op::MapRange { ipa, .. }
        | Op::UnmapRange { ipa, .. }
        | Op::ProtectRange { ipa, .. } => Some(ipa),
        _ => None,
    }
}

fn hva_mut(op: &mut Op) -> Option<&mut u64> {
    match op {
        Op::AddMemslot { hva, .. } | Op::UnmapHva { hva, .. } | Op::SetSpteHva { hva, .. } => Some(hva),
        Op::UnmapHvaRange { start, .. } => Some(start),
        _ => None,
    }
}

/// Mutates the input in `data[..size]` into at most `max_size` bytes and returns the new
/// size; `bytes` is libFuzzer's own mutation (`libfuzzer_sys::fuzzer_mutate`).
pub fn mutate(
    data: &mut [u8],
    size: usize,
    max_size: usize,
    seed: u32,
    bytes: impl FnOnce(&mut [u8], usize, usize) -> usize,
) -> usize {
    let mut rng = Rng::seeded(seed);
    if !enabled() {
        return bytes(data, size, max_size);
    }
    let pins = &Campaign::current().pins;
    let share = share_now();
    let out = match rng.below(16) {
        _ if size < 2 => generate(pins, &mut rng),
        r if r < share => generate(pins, &mut rng),
        r if r < share + (16 - share) * 2 / 5 => return bytes(data, size, max_size),
        _ => mutate_ops(&data[..size], pins, &mut rng),
    };
    let n = out.len().min(max_size).min(data.len());
    data[..n].copy_from_slice(&out[..n]);
    n
}

/// One op-level step on an encoded input; the result may be longer than the input (the
/// caller cuts it, which drops ops from the end).
fn mutate_ops(input: &[u8], pins: &Pins, rng: &mut Rng) -> Vec<u8> {
    let layout = Layout::default();
    let (mut h, mut ops) = codec().decode(input, pins, &layout);
    match rng.below(12) {
        // Generation from the shared distribution: one op, a run of ops, or a whole
        // sequence; half of the new ops reuse the VM and address of an op already there.
        0 | 1 => {
            let op = generated(input[0], pins, &ops, rng);
            ops.insert(rng.below(ops.len() + 1), op);
        }
        2 => {
            let at = rng.below(ops.len() + 1);
            for k in 0..2 + rng.below(7) {
                let op = generated(input[0], pins, &ops, rng);
                ops.insert(at + k, op);
            }
        }
        3 => {
            let n = 1 + rng.below(16);
            let mut fresh = Vec::with_capacity(n);
            for _ in 0..n {
                let op = generated(input[0], pins, &fresh, rng);
                fresh.push(op);
            }
            ops = fresh;
        }
        4 if !ops.is_empty() => {
            ops.remove(rng.below(ops.len()));
        }
        5 if !ops.is_empty() => {
            let from = rng.below(ops.len());
            let n = 1 + rng.below(ops.len() - from);
            ops.drain(from..from + n);
        }
        // A run of the input copied elsewhere in it (splice at op boundaries).
        6 if !ops.is_empty() => {
            let from = rng.below(ops.len());
            let run: Vec<Op> = ops[from..(from + 1 + rng.below(4)).min(ops.len())].to_vec();
            let at = rng.below(ops.len() + 1);
            ops.splice(at..at, run);
        }
        7 if ops.len() > 1 => {
            let (a, b) = (rng.below(ops.len()), rng.below(ops.len()));
            ops.swap(a, b);
        }
        8 => mutate_header(&mut h, rng),
        _ if !ops.is_empty() => {
            let i = rng.below(ops.len());
            let other = ops[rng.below(ops.len())];
            tweak(&mut ops[i], &other, h.target, rng);
        }
        _ => mutate_header(&mut h, rng),
    }
    codec().encode(&h, &ops, &layout)
}

/// Sixteenths of the steps that generate a whole new input now: a campaign starts as random
/// testing does (its first 4096 steps generate whole inputs, and the feedback keeps those
/// that reach something new), then the corpus takes over.
fn share_now() -> usize {
    static STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let early = STEPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 4096;
    if early {
        16
    } else {
        generate_share()
    }
}

/// Sixteenths of the steps that generate a whole new input (`STAGEHAND_GENERATE`, 0 to 16).
fn generate_share() -> usize {
    static SHARE: OnceLock<usize> = OnceLock::new();
    *SHARE.get_or_init(|| {
        std::env::var("STAGEHAND_GENERATE").ok().and_then(|v| v.parse().ok()).unwrap_or(8).min(16)
    })
}

/// A whole new input: a random configuration byte and 1 to 64 ops from the decoder's
/// distribution, as the naive generator makes one, except that half of the ops reuse the
/// VM and address of an earlier op (what a bug on one page needs: a map, then a clear, then
/// a read of it).
fn generate(pins: &Pins, rng: &mut Rng) -> Vec<u8> {
    let first = rng.next() as u8;
    let n = 1 + rng.below(64);
    let mut ops: Vec<Op> = Vec::with_capacity(n);
    for _ in 0..n {
        let op = generated(first, pins, &ops, rng);
        ops.push(op);
    }
    let (h, _) = codec().decode(&[first], pins, &Layout::default());
    codec().encode(&h, &ops, &Layout::default())
}

/// A new op from the distribution the decoder and the naive generator share, related half
/// of the time to an op of `context` (same VM and address).
fn generated(first: u8, pins: &Pins, context: &[Op], rng: &mut Rng) -> Op {
    let mut op = crate::fuzz::random_op(first, pins, &mut || rng.next());
    if rng.below(2) == 0 && !context.is_empty() {
        relate(&mut op, &context[rng.below(context.len())]);
    }
    // Now and then an output address at the edge of what a descriptor holds, where a
    // crate that does not check output addresses maps the wrong frame; the decoder's
    // distribution reaches there only through a raw 64-bit value that happens to align.
    let one_in = edge_one_in();
    if one_in > 0 && rng.below(one_in) == 0 {
        if let Some(pa) = pa_mut(&mut op) {
            let (h, _) = codec().decode(&[first], pins, &Layout::default());
            *pa = edge_pa(crate::targets::info(h.target).geometry.pa_limit(), rng);
        }
    }
    op
}

/// One generated op in this many gets an output address at a descriptor's edge
/// (`STAGEHAND_EDGES`; 0: none, for the ablation in `bench/`).
fn edge_one_in() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::env::var("STAGEHAND_EDGES").ok().and_then(|v| v.parse().ok()).unwrap_or(16))
}

/// The end of the output-address space `top`, the page below it, or the 2 MiB below it.
fn edge_pa(top: u64, rng: &mut Rng) -> u64 {
    match rng.below(3) {
        0 => top,
        1 => top - PAGE_SIZE,
        _ => top - (2 << 20),
    }
}

/// The fuzz target's crossover: [`crossover`] with the structure-aware mutator on, else one
/// more of libFuzzer's own mutations (`bytes`), whose steps include its crossover.
pub fn crossover_or(
    a: &[u8],
    b: &[u8],
    out: &mut [u8],
    seed: u32,
    bytes: impl FnOnce(&mut [u8], usize, usize) -> usize,
) -> usize {
    if enabled() {
        return crossover(a, b, out, seed);
    }
    let n = a.len().min(out.len());
    out[..n].copy_from_slice(&a[..n]);
    let _ = b;
    let max = out.len();
    bytes(out, n, max)
}

/// libFuzzer's crossover at op boundaries: the ops of `a` up to a point, then those of `b`
/// from a point, under `a`'s configuration. Writes at most `out.len()` bytes; returns how many.
pub fn crossover(a: &[u8], b: &[u8], out: &mut [u8], seed: u32) -> usize {
    let mut rng = Rng::seeded(seed);
    let pins = &Campaign::current().pins;
    if rng.below(16) < share_now() {
        // libFuzzer picks crossover for half of its steps: they generate as often.
        let bytes = generate(pins, &mut rng);
        let n = bytes.len().min(out.len());
        out[..n].copy_from_slice(&bytes[..n]);
        return n;
    }
    let layout = Layout::default();
    let (h, ops_a) = codec().decode(a, pins, &layout);
    let (_, ops_b) = codec().decode(b, pins, &layout);
    let mut ops: Vec<Op> = ops_a[..rng.below(ops_a.len() + 1)].to_vec();
    ops.extend_from_slice(&ops_b[rng.below(ops_b.len() + 1)..]);
    let bytes = codec().encode(&h, &ops, &layout);
    let n = bytes.len().min(out.len());
    out[..n].copy_from_slice(&bytes[..n]);
    n
}

/// Puts `op` on the address of `other`, and on its VM with it (an address means something
/// in one VM); an op without an address of `other`'s kind is left alone, so ops such as
/// VMID updates keep spreading over the VMs.
fn relate(op: &mut Op, other: &Op) {
    match (&mut *op, *other) {
        // A removal of that slot.
        (Op::RemoveMemslot { vm, slot }, Op::AddMemslot { vm: v, slot: s, .. }) => {
            (*vm, *slot) = (v, s);
            return;
        }
        // A slot right after it, in guest-physical and host-virtual space: the neighbour
        // that shares its last 2 MiB region (and level-3 table) when both are small.
        (
            Op::AddMemslot { vm, slot, gpa, hva, .. },
            Op::AddMemslot { vm: v, slot: s, gpa: g, pages, hva: h },
        ) => {
            let bytes = pages.saturating_mul(PAGE_SIZE);
            (*vm, *slot, *gpa, *hva) = (v, (s + 1) % 8, g.saturating_add(bytes), h.saturating_add(bytes));
            return;
        }
        // The notifier over that whole slot (the host unmapping what backs it).
        (Op::UnmapHvaRange { vm, start, end }, Op::AddMemslot { vm: v, pages, hva, .. }) => {
            (*vm, *start, *end) = (v, hva, hva.saturating_add(pages.saturating_mul(PAGE_SIZE)));
            return;
        }
        _ => {}
    }
    let mut o = *other;
    let mut moved = false;
    if let (Some(a), Some(b)) = (ipa_mut(op), ipa_mut(&mut o)) {
        // Inside a slot: its first page, or (as the op's own page bit chooses) its last,
        // where a slot that crosses a table boundary ends.
        *a = match *other {
            Op::AddMemslot { gpa, pages, .. } if *a & PAGE_SIZE != 0 && pages > 1 => {
                gpa.saturating_add((pages - 1).saturating_mul(PAGE_SIZE))
            }
            _ => *b,
        };
        moved = true;
    }
    if let (Some(a), Some(b)) = (hva_mut(op), hva_mut(&mut o)) {
        *a = *b;
        moved = true;
    }
    if let (true, Some(vm), Some(v)) = (moved, op.vm_mut(), other.vm()) {
        *vm = v;
    }
}

fn pa_mut(op: &mut Op) -> Option<&mut u64> {
    match op {
        Op::Map { pa, .. } | Op::Ioremap { pa, .. } | Op::SetSpteHva { pa, .. } | Op::MapRange { pa, .. } => {
            Some(pa)
        }
        _ => None,
    }
}

/// Moves one operand of `op` toward an interesting value.
fn tweak(op: &mut Op, other: &Op, target: u8, rng: &mut Rng) {
    let geometry = crate::targets::info(target).geometry;
    let limit = geometry.ipa_limit();
    // A third of the time, an output address: another op's frame, the next page, or the
    // edge of what a descriptor can hold (where an output-address check matters).
    if rng.below(3) == 0 {
        let mut o = *other;
        let from_other = pa_mut(&mut o).map(|v| *v);
        if let Some(pa) = pa_mut(op) {
            *pa = match rng.below(5) {
                0 => from_other.unwrap_or(*pa),
                1 => (*pa & !(PAGE_SIZE - 1)).wrapping_add(PAGE_SIZE),
                _ => edge_pa(geometry.pa_limit(), rng),
            };
            return;
        }
    }
    let mut o = *other;
    let from_other = ipa_mut(&mut o).map(|v| *v);
    let hva_other = hva_mut(&mut o).map(|v| *v);
    if let Some(ipa) = ipa_mut(op) {
        let page = *ipa & !(PAGE_SIZE - 1);
        *ipa = match rng.below(7) {
            0 => from_other.unwrap_or(page),
            1 => page.wrapping_add(PAGE_SIZE),
            2 => page.wrapping_sub(PAGE_SIZE),
            3 => page & !((2 << 20) - 1),
            4 => page & !((1 << 30) - 1),
            5 => (page | ((2 << 20) - 1)).wrapping_add(1),
            _ => ipa_bases(limit)[rng.below(16)],
        } % limit.max(PAGE_SIZE);
    } else if let Op::UnmapHvaRange { start, end, .. } = op {
        // Either end moves by a page, or to a 2 MiB boundary (where walks change tables).
        let v = if rng.below(2) == 0 { start } else { end };
        let page = *v & !(PAGE_SIZE - 1);
        *v = match rng.below(5) {
            0 => hva_other.unwrap_or(page),
            1 => page.wrapping_add(PAGE_SIZE),
            2 => page.wrapping_sub(PAGE_SIZE),
            3 => page & !((2 << 20) - 1),
            _ => (page | ((2 << 20) - 1)).wrapping_add(1),
        };
    } else if let Some(hva) = hva_mut(op) {
        let page = *hva & !(PAGE_SIZE - 1);
        *hva = match rng.below(3) {
            0 => hva_other.unwrap_or(page),
            1 => page.wrapping_add(PAGE_SIZE),
            _ => page.wrapping_sub(PAGE_SIZE),
        };
    } else if let (Some(vm), Some(v)) = (op.vm_mut(), other.vm()) {
        *vm = v;
    }
}

fn mutate_header(h: &mut Header, rng: &mut Rng) {
    match rng.below(4) {
        0 => {
            h.walker = if h.walker == harness_core::Walker::Coherent {
                harness_core::Walker::NonCoherent
            } else {
                harness_core::Walker::Coherent
            }
        }
        1 => h.strict_bbm = !h.strict_bbm,
        2 => {
            let (lo, hi) = crate::targets::info(h.target).vmid_bits;
            h.vmid_bits = lo + (rng.below(usize::from(hi - lo) + 1) as u8);
        }
        _ => h.target = rng.below(crate::targets::runnable()) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_steps_keep_inputs_decodable_and_change_them() {
        crate::testing::register();
        let mut rng = Rng(7);
        let pins = Pins::default();
        let mut input = crate::fuzz::encode(
            &harness_core::Config::default(),
            &[Op::CreateVm { vm: 0 }, Op::Map { vm: 0, ipa: 0x20_0000, pa: 0x4400_0000, writable: true }],
        );
        let mut changed = 0;
        for _ in 0..500 {
            let out = mutate_ops(&input, &pins, &mut rng);
            // What the mutator wrote is what the target decodes.
            let (h, ops) = codec().decode(&out, &pins, &Layout::default());
            assert_eq!(
                codec().decode(&codec().encode(&h, &ops, &Layout::default()), &pins, &Layout::default()).1,
                ops
            );
            changed += usize::from(out != input);
            if out.len() < 256 {
                input = out;
            }
        }
        assert!(changed > 400, "only {changed} of 500 steps changed the input");
    }

    #[test]
    fn output_addresses_reach_the_edge_of_the_descriptor() {
        crate::testing::register();
        let mut rng = Rng(11);
        let map = Op::Map { vm: 0, ipa: 0x20_0000, pa: 0x4400_0000, writable: true };
        let mut edges = 0;
        for _ in 0..300 {
            let mut op = map;
            tweak(&mut op, &map, 0, &mut rng);
            let Op::Map { pa, .. } = op else { unreachable!() };
            // kvm-arm-2012's descriptors hold 40-bit output addresses.
            edges += usize::from(pa == 1 << 40 || pa == (1 << 40) - 0x1000);
        }
        assert!(edges > 20, "{edges} of 300 tweaks reached the edge");
    }

    #[test]
    fn related_inserts_share_the_vm_and_the_address() {
        crate::testing::register();
        let mut op = Op::Read { vm: 3, ipa: 0x1000 };
        relate(&mut op, &Op::Map { vm: 1, ipa: 0x20_0000, pa: 0x4400_0000, writable: true });
        assert_eq!(op, Op::Read { vm: 1, ipa: 0x20_0000 });
        let slot = Op::AddMemslot { vm: 2, slot: 7, gpa: 0x10_0000, pages: 16, hva: 0x7000_0000 };
        let mut op = Op::RemoveMemslot { vm: 0, slot: 1 };
        relate(&mut op, &slot);
        assert_eq!(op, Op::RemoveMemslot { vm: 2, slot: 7 });
        let mut op = Op::AddMemslot { vm: 0, slot: 1, gpa: 0, pages: 2, hva: 0 };
        relate(&mut op, &slot);
        assert_eq!(op, Op::AddMemslot { vm: 2, slot: 0, gpa: 0x11_0000, pages: 2, hva: 0x7001_0000 });
        let mut op = Op::UnmapHvaRange { vm: 0, start: 0, end: 0 };
        relate(&mut op, &slot);
        assert_eq!(op, Op::UnmapHvaRange { vm: 2, start: 0x7000_0000, end: 0x7001_0000 });
    }
}

#[cfg(test)]
mod generation {
    use super::*;

    #[test]
    fn generated_inputs_decode_to_the_ops_generated() {
        crate::testing::register();
        let pins = Pins::default();
        let mut rng = Rng::seeded(5);
        let mut total = 0;
        for _ in 0..2000 {
            let first = rng.next() as u8;
            let n = 1 + rng.below(64);
            let ops: Vec<Op> =
                (0..n).map(|_| crate::fuzz::random_op(first, &pins, &mut || rng.next())).collect();
            let (h, _) = codec().decode(&[first], &pins, &Layout::default());
            let bytes = codec().encode(&h, &ops, &Layout::default());
            let (h2, back) = codec().decode(&bytes, &pins, &Layout::default());
            assert_eq!(h2, h);
            assert_eq!(back, ops, "{first:#x}");
            total += bytes.len();
        }
        assert!(total / 2000 < 512, "mean encoded length {}", total / 2000);
    }

    #[test]
    fn the_first_op_alone_is_the_first_op_of_the_whole_decoding() {
        crate::testing::register();
        let mut rng = Rng::seeded(9);
        for target in [None, Some(0), Some(1)] {
            let pins = Pins { target, ..Pins::default() };
            for _ in 0..3000 {
                let data: Vec<u8> = (0..rng.below(24)).map(|_| rng.next() as u8).collect();
                let whole = codec().decode(&data, &pins, &Layout::default()).1;
                assert_eq!(
                    codec().first_op(&data, &pins, &Layout::default()),
                    whole.first().copied(),
                    "{data:x?}"
                );
            }
        }
    }
}
