//! Native measurements for `cargo xtask bench`, printed as one JSON document: executor
//! throughput in three configurations, cost per op as sequences and mappings grow, and trace
//! size with record and replay speed. Every figure is the median of several runs, and each
//! comparison is against a baseline measured in the same run.

use harness::bare::BareRunner;
use harness::core::{bytes, Config, Layout, Op};
use harness::{files, run};
use serde_json::json;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

/// Runs `f` `runs` times and returns the median of its durations in seconds.
fn median_secs(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// A deterministic stream of random bytes (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Random sequences of `len` ops that do real work: four VMs exist from the start, ops
/// target them, and nothing destroys them (so ops are not refused for a missing VM).
fn workload(rng: &mut Rng, len: usize, layout: &Layout, target: u8) -> Vec<Op> {
    let mut ops: Vec<Op> = (0..4).map(|vm| Op::CreateVm { vm }).collect();
    while ops.len() < len {
        let mut data: Vec<u8> = (0..25).map(|_| rng.next() as u8).collect();
        data[0] = 0; // coherent walker, relaxed BBM, the target's widest VMIDs
        let pins = bytes::Pins { target: Some(target), ..Default::default() };
        let Some(mut op) = harness::fuzz::codec().decode(&data, &pins, layout).1.into_iter().next() else {
            continue;
        };
        if matches!(op, Op::CreateVm { .. } | Op::DestroyVm { .. } | Op::FailAlloc { .. }) {
            continue;
        }
        set_vm(&mut op, (rng.next() % 4) as u8);
        ops.push(op);
    }
    ops.truncate(len);
    ops
}

/// `aarch64-paging` with a coherent walker, relaxed BBM, 16-bit VMIDs, the guest's MMU off.
fn paging_config() -> Config {
    let pins = bytes::Pins { target: Some(1), ..Default::default() };
    harness::fuzz::Campaign { pins, ..Default::default() }.decode(&[0]).0
}

fn set_vm(op: &mut Op, v: u8) {
    if let Some(vm) = op.vm_mut() {
        *vm = v;
    }
}

/// ops/s and sequences/s of the three configurations over `seqs` (all of target `T`).
fn throughput<T: harness::core::target::Target + Default>(
    name: &str,
    seqs: &[(Config, Vec<Op>)],
    runs: usize,
) -> serde_json::Value {
    let ops: usize = seqs.iter().map(|(_, o)| o.len()).sum();
    let config = seqs.first().map_or(Config::default(), |(c, _)| *c);
    let mut bare = BareRunner::<T>::new(&config);
    let t_bare = median_secs(runs, || {
        for (c, o) in seqs {
            black_box(bare.run(c, o));
        }
    });
    let mut exec = run::executor(config, false);
    let t_oracles = median_secs(runs, || {
        for (c, o) in seqs {
            run::run_ops(&mut exec, *c, o);
        }
    });
    let mut rec = run::executor(config, true);
    let t_record = median_secs(runs, || {
        for (c, o) in seqs {
            run::run_ops(&mut rec, *c, o);
            black_box(rec.trace().to_bytes());
        }
    });
    let per = |t: f64| json!({"ops_per_sec": ops as f64 / t, "seqs_per_sec": seqs.len() as f64 / t, "ns_per_op": t * 1e9 / ops as f64});
    json!({
        "workload": name, "sequences": seqs.len(), "ops": ops,
        "bare": per(t_bare), "oracles": per(t_oracles), "recording": per(t_record),
        "oracle_overhead": t_oracles / t_bare, "recording_overhead": t_record / t_bare,
    })
}

/// Time per op of a fixed mix (map a page far away, read it, read a mapped page, clear the
/// new page) once `mapped` pages are mapped in a dense region. Only the mix is timed.
fn growth(mapped: usize, mix_rounds: usize, runs: usize) -> serde_json::Value {
    let config = Config::default();
    let window = config.layout.guest_window().0;
    let mut setup = vec![Op::CreateVm { vm: 0 }];
    for i in 0..mapped as u64 {
        setup.push(Op::Map {
            vm: 0,
            ipa: 0x10_0000_0000 + i * 4096,
            pa: window + (i % 256) * 4096,
            writable: true,
        });
    }
    let mut mix = Vec::new();
    for k in 0..mix_rounds as u64 {
        let ipa = 0x1000 * (k % 512) + 0x4000_0000 * (1 + k % 8);
        let hit = 0x10_0000_0000 + (k * 7919 % mapped as u64) * 4096;
        mix.extend([
            Op::Map { vm: 0, ipa, pa: window + (k % 256) * 4096, writable: true },
            Op::Read { vm: 0, ipa },
            Op::Read { vm: 0, ipa: hit },
            Op::Clear { vm: 0, ipa },
        ]);
    }
    let mut exec = run::executor(config, false);
    let mut mix_times: Vec<f64> = (0..runs)
        .map(|_| {
            exec.reset(config);
            for op in &setup {
                exec.run(op);
            }
            let s = Instant::now();
            for op in &mix {
                exec.run(op);
            }
            s.elapsed().as_secs_f64()
        })
        .collect();
    mix_times.sort_by(f64::total_cmp);
    let mix_t = mix_times[runs / 2];
    assert!(
        exec.violations().is_empty(),
        "the growth workload must run clean: {:?}",
        exec.violations().first()
    );
    json!({"mapped_pages": mapped, "ns_per_op": mix_t * 1e9 / mix.len() as f64, "ops": mix.len()})
}

/// Trace bytes per op, and record and replay speed.
fn traces(name: &str, seqs: &[(Config, Vec<Op>)], runs: usize) -> serde_json::Value {
    let ops: usize = seqs.iter().map(|(_, o)| o.len()).sum();
    let recorded: Vec<Vec<u8>> = seqs.iter().map(|(c, o)| run::run(*c, o, true).trace().to_bytes()).collect();
    let bytes: usize = recorded.iter().map(Vec::len).sum();
    let mut exec = run::executor(Config::default(), true);
    let t_record = median_secs(runs, || {
        for (c, o) in seqs {
            run::run_ops(&mut exec, *c, o);
            black_box(exec.trace().to_bytes());
        }
    });
    let t_replay = median_secs(runs, || {
        for b in &recorded {
            let t = harness::core::Trace::from_bytes(b).expect("just recorded");
            let ops: Vec<Op> = t.steps.iter().map(|s| s.op).collect();
            run::run_ops(&mut exec, t.config, &ops);
            assert!(harness::core::trace::first_divergence(&t, &exec.trace()).is_none());
        }
    });
    json!({
        "workload": name, "traces": seqs.len(), "ops": ops, "bytes": bytes, "bytes_per_op": bytes as f64 / ops as f64,
        "record_ops_per_sec": ops as f64 / t_record, "replay_ops_per_sec": ops as f64 / t_replay,
    })
}

fn corpus(dir: &Path) -> Vec<(Config, Vec<Op>)> {
    let files = files::collect(dir).expect("corpus readable");
    files
        .iter()
        // Targets this build does not run (harness::elsewhere) are measured under qemu-user.
        .filter(|f| harness::elsewhere::of_file(f).is_none())
        .filter_map(|f| match files::load(f, &files::own_config) {
            Ok(files::Input::Text(s)) => Some((s.config, s.ops)),
            _ => None,
        })
        .collect()
}

fn main() {
    stagehand_cli::register();
    let args: Vec<String> = std::env::args().collect();
    let runs: usize =
        args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(5);
    let quick = args.iter().any(|a| a == "--quick");
    let layout = Layout::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        // For `perf record`: the oracles over random sequences of one length (and target:
        // `--profile LEN [TARGET]`, 0 kvm-arm-2012, 1 aarch64-paging), repeated.
        let len: usize = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(64);
        let target: u8 = args.get(i + 2).and_then(|v| v.parse().ok()).unwrap_or(0);
        let config = if target == 1 { paging_config() } else { Config::default() };
        let seqs: Vec<_> =
            (0..20_000 / len).map(|_| (config, workload(&mut rng, len, &layout, target))).collect();
        let mut exec = run::executor(config, false);
        for _ in 0..runs * 10 {
            for (c, o) in &seqs {
                run::run_ops(&mut exec, *c, o);
            }
        }
        return;
    }
    let all = corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus"));
    let (corpus, paging_corpus): (Vec<_>, Vec<_>) = all.into_iter().partition(|(c, _)| c.target == 0);
    let paging_corpus: Vec<_> = paging_corpus.into_iter().filter(|(c, _)| c.target == 1).collect();
    let total = if quick { 20_000 } else { 200_000 };
    type Kvm = target_kvm_arm_2012::KvmArm2012;
    type Paging = target_aarch64_paging::Aarch64Paging;
    let mut tp = vec![throughput::<Kvm>("corpus", &corpus, runs)];
    let mut random = Vec::new();
    for len in [16usize, 64, 256, 1024] {
        let seqs: Vec<(Config, Vec<Op>)> =
            (0..total / len).map(|_| (Config::default(), workload(&mut rng, len, &layout, 0))).collect();
        tp.push(throughput::<Kvm>(&format!("random-{len}"), &seqs, runs));
        random.push(seqs);
    }
    // The third-party target: its corpus, and random sequences of 64 ops.
    tp.push(throughput::<Paging>("aarch64-paging-corpus", &paging_corpus, runs));
    let paging = paging_config();
    let seqs: Vec<(Config, Vec<Op>)> =
        (0..total / 64 / 4).map(|_| (paging, workload(&mut rng, 64, &layout, 1))).collect();
    tp.push(throughput::<Paging>("aarch64-paging-random-64", &seqs, runs));
    let sizes = if quick { vec![1, 100, 1000] } else { vec![1, 100, 10_000, 100_000] };
    let growth: Vec<_> = sizes.iter().map(|&n| growth(n, if quick { 500 } else { 5000 }, runs)).collect();
    let traces = vec![
        traces("corpus", &corpus, runs),
        traces("random-64", &random[1], runs),
        traces("random-1024", &random[3], runs),
    ];
    println!("{}", json!({"runs": runs, "throughput": tp, "growth": growth, "traces": traces}));
}
