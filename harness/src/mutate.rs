//! The op-level mutator of the `ops` fuzz target (libFuzzer's `fuzz_mutator!`): a step of
//! the fuzzer is a step of a sequence. An input is decoded as the target sees it (with the
//! campaign's pins), changed as a sequence, and encoded back with the byte codec, which
//! inverts the decoder:
//!
//! - insert a random op, half the time *related*: on the VM and address of an op already
//!   there (a read after a map, an unmap over a mapped page, which is what deep bugs need);
//! - delete, duplicate or swap ops;
//! - move one operand toward an interesting address: another op's address, the next or
//!   previous page, the enclosing 2 MiB or 1 GiB boundary, or one of the codec's bases;
//! - change the configuration byte (walker, BBM mode, VMID width, target).
//!
//! One step in four is left to libFuzzer's byte mutation, which keeps its bit flips and
//! splices. The op level is off unless `STAGEHAND_MUTATOR=ops`: `cargo xtask ttb` measured
//! it against byte mutation alone, and byte mutation found every switch sooner or as soon
//! (bench/ttb.md), so campaigns run byte mutation and this stays for that measurement.

use crate::fuzz::{codec, Campaign};
use harness_core::arch::PAGE_SIZE;
use harness_core::bytes::{ipa_bases, Header, Pins};
use harness_core::op::Op;
use harness_core::Layout;
use std::sync::OnceLock;

/// Whether the op level is on (`STAGEHAND_MUTATOR=ops`).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("STAGEHAND_MUTATOR").is_ok_and(|v| v == "ops"))
}

/// A small deterministic generator seeded by libFuzzer.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
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
    let mut rng = Rng(u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    if !enabled() || size == 0 || rng.below(4) == 0 {
        return bytes(data, size, max_size);
    }
    let pins = &Campaign::current().pins;
    let out = mutate_ops(&data[..size], pins, &mut rng);
    let n = out.len().min(max_size).min(data.len());
    data[..n].copy_from_slice(&out[..n]);
    n
}

/// One op-level step on an encoded input; the result may be longer than the input (the
/// caller cuts it, which drops ops from the end).
fn mutate_ops(input: &[u8], pins: &Pins, rng: &mut Rng) -> Vec<u8> {
    let layout = Layout::default();
    let (mut h, mut ops) = codec().decode(input, pins, &layout);
    match rng.below(8) {
        0 | 1 => {
            let mut op = random_op(input[0], pins, rng);
            if rng.below(2) == 0 && !ops.is_empty() {
                relate(&mut op, &ops[rng.below(ops.len())]);
            }
            ops.insert(rng.below(ops.len() + 1), op);
        }
        2 if !ops.is_empty() => {
            ops.remove(rng.below(ops.len()));
        }
        3 if !ops.is_empty() => {
            let op = ops[rng.below(ops.len())];
            ops.insert(rng.below(ops.len() + 1), op);
        }
        4 if ops.len() > 1 => {
            let (a, b) = (rng.below(ops.len()), rng.below(ops.len()));
            ops.swap(a, b);
        }
        5 => mutate_header(&mut h, rng),
        _ if !ops.is_empty() => {
            let i = rng.below(ops.len());
            let other = ops[rng.below(ops.len())];
            tweak(&mut ops[i], &other, h.target, rng);
        }
        _ => mutate_header(&mut h, rng),
    }
    codec().encode(&h, &ops, &layout)
}

/// An op of a random kind the target offers, with random operands from the codec.
fn random_op(first: u8, pins: &Pins, rng: &mut Rng) -> Op {
    let mut b = [0u8; 18];
    b[0] = first;
    for chunk in b[1..].chunks_mut(8) {
        let r = rng.next().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    let (_, ops) = codec().decode(&b, pins, &Layout::default());
    ops.first().copied().unwrap_or(Op::CreateVm { vm: 0 })
}

/// Puts `op` on the VM and the address of `other`.
fn relate(op: &mut Op, other: &Op) {
    if let (Some(vm), Some(v)) = (op.vm_mut(), other.vm()) {
        *vm = v;
    }
    let mut o = *other;
    if let (Some(a), Some(b)) = (ipa_mut(op), ipa_mut(&mut o)) {
        *a = *b;
    }
    if let (Some(a), Some(b)) = (hva_mut(op), hva_mut(&mut o)) {
        *a = *b;
    }
}

/// Moves one operand of `op` toward an interesting value.
fn tweak(op: &mut Op, other: &Op, target: u8, rng: &mut Rng) {
    let limit = crate::targets::info(target).geometry.ipa_limit();
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
        _ => h.target = rng.below(crate::targets::ALL.len()) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_steps_keep_inputs_decodable_and_change_them() {
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
    fn related_inserts_share_the_vm_and_the_address() {
        let mut op = Op::Read { vm: 3, ipa: 0x1000 };
        relate(&mut op, &Op::Map { vm: 1, ipa: 0x20_0000, pa: 0x4400_0000, writable: true });
        assert_eq!(op, Op::Read { vm: 1, ipa: 0x20_0000 });
    }
}
