//! Criterion benches of the hot paths: `stage2_set_pte`, `stage2_clear_pte`, the walker,
//! the oracle checks around an op, and the fuzzers' decoder. `cargo bench -p harness`.

use criterion::{criterion_group, criterion_main, Criterion};
use harness::bare::BarePlatform;
use harness::core::{bytes, walker, Config, Layout, Op};
use mmu::{Defects, Ipa, Kvm, Pa};
use std::hint::black_box;

const FRAME: Pa = Pa(0x4400_0000);

/// A VM on the bare platform with a neighbour mapped, so the level-3 table stays.
fn vm() -> (Kvm, BarePlatform) {
    let mut p = BarePlatform::new(Layout::default());
    let mut k = Kvm::new(Defects::NONE);
    k.alloc_stage2_pgd(&mut p).expect("pool has room");
    k.map_guest_page(&mut p, Ipa(0x20_0000), FRAME, true).expect("pool has room");
    (k, p)
}

fn mmu(c: &mut Criterion) {
    let (mut k, mut p) = vm();
    c.bench_function("mmu/set_pte+clear_pte", |b| {
        b.iter(|| {
            k.map_guest_page(&mut p, Ipa(0x20_1000), FRAME, true).expect("mapped");
            k.stage2_clear_pte(&mut p, black_box(Ipa(0x20_1000))).expect("cleared")
        })
    });
    let (mut k, mut p) = vm();
    let mut frame = 0;
    c.bench_function("mmu/set_pte_break_before_make", |b| {
        b.iter(|| {
            frame ^= 0x1000;
            k.map_guest_page(&mut p, black_box(Ipa(0x20_0000)), FRAME.add(frame), true).expect("remapped")
        })
    });
}

fn walk(c: &mut Criterion) {
    let config = Config::default();
    let mut exec = harness::run::executor(config, false);
    harness::run::run_ops(
        &mut exec,
        config,
        &[Op::CreateVm { vm: 0 }, Op::Map { vm: 0, ipa: 0x20_0000, pa: FRAME.0, writable: true }],
    );
    let (_, root) = exec.roots().next().expect("a VM");
    c.bench_function("walker/translate", |b| {
        b.iter(|| walker::translate(&mut |a| exec.host.peek(a), root, black_box(Ipa(0x20_0010))))
    });
}

fn oracles(c: &mut Criterion) {
    let config = Config::default();
    let mut exec = harness::run::executor(config, false);
    harness::run::run_ops(
        &mut exec,
        config,
        &[Op::CreateVm { vm: 0 }, Op::Map { vm: 0, ipa: 0x20_0000, pa: FRAME.0, writable: true }],
    );
    let map = Op::Map { vm: 0, ipa: 0x20_1000, pa: FRAME.0, writable: true };
    let clear = Op::Clear { vm: 0, ipa: 0x20_1000 };
    c.bench_function("oracles/map+clear", |b| {
        b.iter(|| {
            exec.run(black_box(&map));
            exec.run(black_box(&clear))
        })
    });
    let read = Op::Read { vm: 0, ipa: 0x20_0010 };
    c.bench_function("oracles/guest_read", |b| b.iter(|| exec.run(black_box(&read))));
}

fn decode(c: &mut Criterion) {
    let data: Vec<u8> = (0..256u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let layout = Layout::default();
    c.bench_function("decode/256_bytes", |b| b.iter(|| bytes::decode(black_box(&data), &layout)));
}

criterion_group!(benches, mmu, walk, oracles, decode);
criterion_main!(benches);
