//! Criterion benches of the hot paths: the reference target's set/clear through its adapter,
//! the walker, the oracle checks around an op, and the fuzzers' decoder.
//! `cargo bench -p stagehand-cli`.

use criterion::{criterion_group, criterion_main, Criterion};
use harness::bare::BareServices;
use harness::core::arch::{walk, Geometry, Ipa};
use harness::core::bytes::Pins;
use harness::core::target::Target;
use harness::core::{Config, Layout, Op};
use std::hint::black_box;
use target_kvm_arm_2012::KvmArm2012;

const FRAME: u64 = 0x4400_0000;

/// A VM on the bare services with a neighbour mapped, so the level-3 table stays.
fn vm() -> (KvmArm2012, BareServices) {
    let mut s = BareServices::new(Layout::default());
    let mut t = KvmArm2012::default();
    t.reset(&Config::default());
    t.call(&mut s, &Op::CreateVm { vm: 0 }).expect("pool has room");
    t.call(&mut s, &Op::Map { vm: 0, ipa: 0x20_0000, pa: FRAME, writable: true }).expect("pool has room");
    (t, s)
}

fn mmu(c: &mut Criterion) {
    let (mut t, mut s) = vm();
    let map = Op::Map { vm: 0, ipa: 0x20_1000, pa: FRAME, writable: true };
    let clear = Op::Clear { vm: 0, ipa: 0x20_1000 };
    c.bench_function("mmu/set_pte+clear_pte", |b| {
        b.iter(|| {
            t.call(&mut s, black_box(&map)).expect("mapped");
            t.call(&mut s, black_box(&clear)).expect("cleared")
        })
    });
    let (mut t, mut s) = vm();
    let mut frame = 0;
    c.bench_function("mmu/set_pte_break_before_make", |b| {
        b.iter(|| {
            frame ^= 0x1000;
            let remap = Op::Map { vm: 0, ipa: 0x20_0000, pa: FRAME + frame, writable: true };
            t.call(&mut s, black_box(&remap)).expect("remapped")
        })
    });
}

fn walker(c: &mut Criterion) {
    let (t, s) = vm();
    let root = t.root(0).expect("a VM");
    let g = Geometry::ARMV7_40BIT;
    c.bench_function("walker/translate", |b| {
        b.iter(|| walk::translate(&g, &mut |a| s.read(a), root, black_box(Ipa(0x20_0010))))
    });
}

fn oracles(c: &mut Criterion) {
    stagehand_cli::register();
    let config = Config::default();
    let mut exec = harness::run::executor(config, false);
    harness::run::run_ops(
        &mut exec,
        config,
        &[Op::CreateVm { vm: 0 }, Op::Map { vm: 0, ipa: 0x20_0000, pa: FRAME, writable: true }],
    );
    let map = Op::Map { vm: 0, ipa: 0x20_1000, pa: FRAME, writable: true };
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
    stagehand_cli::register();
    let data: Vec<u8> = (0..256u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let layout = Layout::default();
    let codec = harness::fuzz::codec();
    let pins = Pins::default();
    c.bench_function("decode/256_bytes", |b| b.iter(|| codec.decode(black_box(&data), &pins, &layout)));
}

criterion_group!(benches, mmu, walker, oracles, decode);
criterion_main!(benches);
