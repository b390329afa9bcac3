//! The command line of `cargo xtask`: one subcommand per entry point, each with its own
//! `--help` (clap).

use crate::fuzz::{self, Settings};
use clap::{Args, Parser};
use std::path::PathBuf;

/// Stagehand's entry points. Each command installs what a fresh machine lacks, then runs.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub enum Cli {
    /// Install what a fresh machine lacks (rustup targets, components, tools).
    Setup,
    /// The main job: the corpus through every oracle, then a bounded fuzzing campaign from
    /// the corpus seeds, triage of its findings, and a summary.
    Demo(Campaign),
    /// A libFuzzer campaign (the options of `demo`, without the corpus run).
    Fuzz(Campaign),
    /// An AFL++ campaign on the ops target.
    Afl(Campaign),
    /// Minimize the libFuzzer corpus of the ops target (cargo fuzz cmin).
    Cmin,
    /// Every performance figure: native throughput and cost growth, traces, criterion hot
    /// paths, fuzz execs/s, QEMU, campaign memory, the default campaign against a baseline
    /// commit; writes bench/results.{md,json} and bench/cost.svg.
    Bench(Bench),
    /// Time to bug for every kvm-arm-2012 switch and every filed finding (its workaround
    /// off): libFuzzer against the naive generator, from an empty corpus and from the seeds,
    /// and the ablation modes; writes bench/ttb.{md,json,svg}.
    Ttb(Ttb),
    /// The `stagehand` program built for AArch64 Linux under qemu-user, where aarch64-paging
    /// executes its own TLBIs and the harness traps them: its corpus, regressions and random
    /// sequences must give the native traces and violations.
    QemuUser {
        /// Random sequences compared, with the workarounds on and again off.
        #[arg(long, default_value_t = 1000)]
        naive: usize,
    },
    /// Lines of the code under test (mmu, the adapters, aarch64-paging) that the corpus and a
    /// campaign reach: target/coverage/html/index.html and target/coverage/summary.txt.
    Coverage {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// How much of a target's code its corpus pins: cargo-mutants with the corpus as the only
    /// test, and with --search a differential search per survivor; writes bench/mutants.md.
    Mutants(Mutants),
    /// Test a patched or local copy of a dependency in every build (one place:
    /// .cargo/config.toml).
    Patch {
        /// CRATE=PATH pairs to patch in.
        patches: Vec<String>,
        /// Remove every patch.
        #[arg(long)]
        clear: bool,
        /// Show where each build resolves each patched crate, and fail if one misses it.
        #[arg(long)]
        check: bool,
    },
    /// The out-of-tree example (examples/out-of-tree) as its user runs it: tests and
    /// snapshots, its corpus with and without its deliberate bug, QEMU, and two campaigns
    /// that must find the bug with it and nothing without it.
    Example {
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
    /// Every test: fmt, clippy, unit, integration and snapshot tests, the ARM builds, the
    /// corpus on QEMU (and the board path), the out-of-tree example, fuzzing smokes for
    /// libFuzzer and AFL++, and the ClusterFuzzLite build.
    Test,
    /// The fuzzing smokes of `cargo xtask test` alone: a 30 s libFuzzer campaign on the
    /// corrected code that must find nothing, the ClusterFuzzLite build, and AFL++ for 15 s.
    Smoke,
}

/// The options of a campaign.
#[derive(Args)]
pub struct Campaign {
    /// Seconds to run.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Parallel jobs (libFuzzer -fork, AFL++ secondaries).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Defect switches (of whichever target an input chooses), or `none`.
    #[arg(long, default_value = "none")]
    pub defects: String,
    /// Workarounds of filed findings: `all` (the default), `none`, or names.
    #[arg(long)]
    pub workarounds: Option<String>,
    /// Pin the target.
    #[arg(long)]
    pub target: Option<String>,
    /// Pin the VMID width.
    #[arg(long)]
    pub vmid_bits: Option<u8>,
    /// Pin the walker: `coherent` or `non-coherent`.
    #[arg(long)]
    pub walker: Option<String>,
    /// Pin strict break-before-make.
    #[arg(long)]
    pub strict_bbm: bool,
    /// Count only these violation kinds.
    #[arg(long)]
    pub expect: Option<String>,
    /// The known findings that are not crashes, or `none`.
    #[arg(long, default_value = fuzz::KNOWN_FINDINGS)]
    pub known: String,
    /// libFuzzer's -max_len.
    #[arg(long, default_value_t = fuzz::DEFAULT_MAX_LEN)]
    pub max_len: usize,
    /// Where triaged regression files go.
    #[arg(long, default_value = "corpus/regressions")]
    pub out: PathBuf,
}

impl Campaign {
    /// The campaign settings: `--defects`, and pins for whatever is given.
    pub fn settings(&self) -> Settings {
        Settings {
            defects: self.defects.clone(),
            workarounds: self.workarounds.clone(),
            target: self.target.clone(),
            vmid_bits: self.vmid_bits,
            walker: self.walker.clone(),
            strict_bbm: self.strict_bbm.then_some(true),
            expect: self.expect.clone(),
            known: (self.known != "none").then(|| self.known.clone()),
        }
    }
}

/// The options of `bench`.
#[derive(Args)]
pub struct Bench {
    /// Runs per measurement (7; 3 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Seconds per fuzz-throughput measurement (20; 5 with --quick).
    #[arg(long)]
    pub fuzz_seconds: Option<u64>,
    /// Seconds of the campaign-memory run (600; 30 with --quick).
    #[arg(long)]
    pub campaign_seconds: Option<u64>,
    /// The commit the default campaign is compared with.
    #[arg(long, default_value = "7c66a05")]
    pub baseline: String,
    /// Seconds of each default campaign (60; 15 with --quick).
    #[arg(long)]
    pub default_seconds: Option<u64>,
    /// Shorter measurements.
    #[arg(long)]
    pub quick: bool,
    /// Rewrite the report and plot from bench/results.json, measuring nothing.
    #[arg(long)]
    pub render: bool,
}

/// The options of `ttb`.
#[derive(Args)]
pub struct Ttb {
    #[arg(long, default_value_t = 10)]
    pub trials: usize,
    /// Seconds a trial may run.
    #[arg(long, default_value_t = 60)]
    pub cap: u64,
    /// Trials at a time.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
    /// Only these bugs (comma-separated).
    #[arg(long)]
    pub bugs: Option<String>,
    /// `empty`, `seeds` or `both`.
    #[arg(long, default_value = "both")]
    pub from: String,
    /// Modes: libfuzzer, naive, bytes, ops, no-edges, no-features, no-<family>, len<N>.
    #[arg(long, default_value = "libfuzzer,naive")]
    pub modes: String,
    /// Output path without extension.
    #[arg(long, default_value = "bench/ttb")]
    pub out: String,
    /// libFuzzer's -max_len.
    #[arg(long, default_value_t = fuzz::DEFAULT_MAX_LEN)]
    pub max_len: usize,
    /// With --keep: run only these bugs, keep the others' trials.
    #[arg(long)]
    pub rerun: Option<String>,
    /// An earlier ttb.json of the same settings.
    #[arg(long)]
    pub keep: Option<String>,
    /// Let each input's first byte choose the target (the default campaign's two targets),
    /// instead of pinning each bug's target as a campaign on the crate under test does.
    #[arg(long)]
    pub any_target: bool,
}

/// The options of `mutants`.
#[derive(Args)]
pub struct Mutants {
    /// The target whose code is mutated.
    #[arg(long, default_value = "kvm-arm-2012")]
    pub target: String,
    /// Mutate the registry crate (through a scratch [patch]) instead of the adapter and mmu.
    #[arg(long = "crate")]
    pub registry_crate: bool,
    /// A differential search per survivor.
    #[arg(long)]
    pub search: bool,
    /// Naive sequences per search.
    #[arg(long, default_value_t = 2000)]
    pub naive: usize,
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Only mutants matching these regular expressions.
    #[arg(long)]
    pub re: Vec<String>,
    /// The CI smoke: three chosen mutants through the whole command.
    #[arg(long)]
    pub smoke: bool,
    /// Reuse the last cargo-mutants run of this target (target/mutants/NAME): only the
    /// search and the report run again.
    #[arg(long)]
    pub reuse: bool,
}
