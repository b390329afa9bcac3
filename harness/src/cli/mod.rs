//! The `stagehand` command line over a program's own targets: check, record, replay, diff,
//! show, convert, minimize, triage and fuzz stage-2 op sequences, and replay them on QEMU.
//! A program is a few lines:
//!
//! ```no_run
//! use harness::targets::Entry;
//! # static TARGETS: &[&Entry] = &[];
//! fn main() -> std::process::ExitCode {
//!     harness::cli::main(TARGETS) // e.g. &[&my_adapter::TARGET]
//! }
//! ```
//!
//! Exit codes are a contract: 0 when everything met its expectation (or agreed), 1 when
//! something did not (a violation, a divergence), 2 on bad input.

use crate::expect::Expect;
use crate::files::{self, Input, InputError};
use crate::text::{self, Sequence};
use clap::{Args, Parser, Subcommand};
use harness_core::op::{Config, Walker};
use harness_core::trace::Trace;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "stagehand",
    version,
    about = "Deterministic record/replay harness and fuzzer for ARM stage-2 MMU code"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
pub(crate) struct Global {
    /// Defect switches of the target to turn on, replacing the header's set (`none` turns
    /// all off).
    #[arg(long, global = true)]
    pub defects: Option<String>,
    /// Workarounds of the target's filed findings to turn on (`all`, `none` or names),
    /// replacing the header's set; campaigns default to `all`.
    #[arg(long, global = true)]
    pub workarounds: Option<String>,
    /// VMID width in bits (within the target's widths), replacing the header's.
    #[arg(long, global = true)]
    pub vmid_bits: Option<u8>,
    /// Table walker coherency: `coherent` or `non-coherent`.
    #[arg(long, global = true, value_parser = text::parse_walker)]
    pub walker: Option<Walker>,
    /// Strict break-before-make: the protocol automaton checks every replacement.
    #[arg(long, global = true)]
    pub strict_bbm: bool,
    /// The target fuzzer bytes are decoded for, whatever their first byte says.
    #[arg(long, global = true, value_parser = text::parse_target)]
    pub target: Option<u8>,
    /// The guest's stage 1: `identity`, or `mmu-off` (AArch64 targets), replacing the
    /// header's.
    #[arg(long, global = true)]
    pub guest: Option<String>,
    /// RAM base of the memory layout (a board's), replacing the header's.
    #[arg(long, global = true, value_parser = parse_ram)]
    pub ram: Option<u64>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

fn parse_ram(s: &str) -> Result<u64, String> {
    text::parse_number(s)
        .filter(|b| b % 0x0100_0000 == 0 && *b < 1 << 32)
        .ok_or_else(|| format!("`{s}`: RAM base must be a 16 MiB-aligned address below 4 GiB"))
}

fn parse_addr(s: &str) -> Result<u64, String> {
    if s == "none" {
        return Ok(0);
    }
    text::parse_number(s).filter(|a| *a < 1 << 32).ok_or_else(|| format!("`{s}`: not a 32-bit address"))
}

impl Global {
    /// Applies the overrides to a configuration; switches and widths are the target's.
    pub fn apply(&self, mut c: Config) -> Result<Config, Failure> {
        let target = crate::targets::info(c.target);
        if let Some(d) = &self.defects {
            c.defects = text::parse_defects(d, target)
                .map_err(|e| Failure::Input(format!("--defects: {e}")))?
                .with_workarounds(c.defects.workarounds());
        }
        if let Some(w) = &self.workarounds {
            let w = text::parse_workarounds(w, target)
                .map_err(|e| Failure::Input(format!("--workarounds: {e}")))?;
            c.defects = c.defects.with_workarounds(w);
        }
        if let Some(b) = self.vmid_bits {
            c.vmid_bits = text::parse_vmid_bits(&b.to_string(), target)
                .map_err(|e| Failure::Input(format!("--vmid-bits: {e}")))?;
        }
        if let Some(w) = self.walker {
            if w == Walker::NonCoherent && target.coherent_walker_only {
                return Err(Failure::Input(format!(
                    "--walker non-coherent: target {} needs a coherent walker",
                    target.name
                )));
            }
            c.walker = w;
        }
        if let Some(m) = &self.guest {
            c.guest = text::parse_guest(m, target).map_err(|e| Failure::Input(format!("--guest: {e}")))?;
        }
        c.strict_bbm |= self.strict_bbm;
        Ok(c)
    }

    /// Applies the overrides to a loaded sequence, rebasing its frames for `--ram`.
    pub fn apply_seq(&self, mut s: Sequence) -> Result<Sequence, Failure> {
        s.config = self.apply(s.config)?;
        if let Some(r) = self.ram {
            s.rebase(r);
        }
        Ok(s)
    }

    /// The campaign that decodes fuzzer bytes: the environment's, with these flags pinned.
    pub fn campaign(&self) -> Result<crate::fuzz::Campaign, Failure> {
        let mut c = crate::fuzz::Campaign::from_env().map_err(Failure::Input)?;
        if self.target.is_some() {
            c.pins.target = self.target;
        }
        if self.walker.is_some() {
            c.pins.walker = self.walker;
        }
        if self.strict_bbm {
            c.pins.strict_bbm = Some(true);
        }
        if self.vmid_bits.is_some() {
            c.pins.vmid_bits = self.vmid_bits;
        }
        if let Some(d) = &self.defects {
            c.defects = (d != "none").then(|| d.clone());
        }
        if let Some(w) = &self.workarounds {
            c.workarounds = w.clone();
        }
        Ok(c)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check sequences with every oracle (files or directories of .s2 files).
    Run {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Treat every violation as a failure, whatever the header expects.
        #[arg(long)]
        ignore_expect: bool,
        /// Seconds one op may run before the run is reported as a hang (the op, its file)
        /// and stopped with exit code 1; 0 waits forever.
        #[arg(long, default_value_t = 10.0)]
        hang: f64,
    },
    /// Run a sequence and write its binary trace.
    Record {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Re-execute a trace and compare event by event (exit 1 on divergence).
    Replay { trace: PathBuf },
    /// Show where two traces first differ.
    Diff { a: PathBuf, b: PathBuf },
    /// Show the ops, the events and the final tables of a sequence, trace or artifact.
    Show { input: PathBuf },
    /// Convert between the text format and fuzzer bytes (by extension: .s2 is text).
    Convert {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Output format, overriding the extension.
        #[arg(long, value_parser = ["text", "bytes"])]
        to: Option<String>,
    },
    /// Show each file's exact expectation (every violation it shows, as kind@op); with
    /// --write, set it in the file's `expect` line. Converts files that name a kind only.
    Expect {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Rewrite the `expect` line of each file whose expectation differs.
        #[arg(long)]
        write: bool,
    },
    /// One line per sequence, for telling two builds apart (`cargo xtask mutants`): an id,
    /// a hash of its trace and its violations as an `expect` line. The sequences: FILES,
    /// then `--naive N` random ones (configuration drawn per sequence, as fuzzers do). With
    /// `--emit ID`, prints that sequence as a `.s2` file instead.
    Digest {
        files: Vec<PathBuf>,
        #[arg(long, default_value_t = 0)]
        naive: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        emit: Option<String>,
    },
    /// Shrink a failing sequence, keeping its violation kind.
    Minimize {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// The violation kind to keep (default: the header's expectation, else the first found).
        #[arg(long)]
        kind: Option<String>,
    },
    /// Turn fuzzer artifacts into minimized regression files (with snapshots), one per
    /// violation kind and site. The configuration comes from STAGEHAND_* and the flags.
    Triage {
        #[arg(required = true)]
        artifacts: Vec<PathBuf>,
        /// Where regression files go.
        #[arg(long, default_value = "corpus/regressions")]
        out: PathBuf,
        /// Where their snapshots go.
        #[arg(long, default_value = "snapshots")]
        snapshots: PathBuf,
    },
    /// Encode .s2 files into fuzzer seed inputs (one .bin each).
    Seeds {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
        /// Files to leave out (e.g. a defect's own trigger, for time-to-bug trials).
        #[arg(long)]
        exclude: Vec<PathBuf>,
    },
    /// Which configurations the fuzzer inputs in DIR decode to (under STAGEHAND_* pins):
    /// counts per target, walker, BBM mode and VMID width.
    Configs { dir: PathBuf },
    /// The naive baseline of the time-to-bug benchmark: random sequences without feedback
    /// until a finding (under STAGEHAND_*) or the time cap. Prints one JSON line; run it
    /// beside libFuzzer, which it beats on several deep bugs (README, "Time to bug").
    Naive {
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Longest sequence, in ops.
        #[arg(long, default_value_t = 64)]
        max_ops: usize,
        /// Seconds a sequence may run before it is reported as a hang (a finding, as
        /// libFuzzer's `-timeout`).
        #[arg(long, default_value_t = 10.0)]
        hang: f64,
        /// Write the finding here as a `.s2` file expecting its violation (for `stagehand
        /// minimize`, then the regression corpus).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run sequences on QEMU, where the same code programs real stage-2 tables (ARMv7
    /// targets in Hyp mode, AArch64 targets at EL2: each file goes to its profile's image),
    /// and compare each hardware trace with its native trace.
    Qemu {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Use this image instead of building the repository's: an ARMv7 or AArch64 ELF, or
        /// the directory of an image crate over your target, built with `cargo build
        /// --release` (once per profile).
        #[arg(long)]
        image: Vec<PathBuf>,
        /// Seconds a boot may go without progress (one record per op) before it is killed.
        #[arg(long, default_value_t = 20.0)]
        timeout: f64,
    },
    /// Random sequences of one target (`--target`), native against QEMU: prints each
    /// disagreement with its first divergence and writes it to `--out` as a `.s2` file.
    QemuRandom {
        /// Sequences to draw.
        #[arg(long, default_value_t = 2000)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 16)]
        max_ops: usize,
        /// Where disagreeing sequences go.
        #[arg(long, default_value = "target/qemu-random")]
        out: PathBuf,
        /// Use this image (an ARMv7 or AArch64 ELF) instead of building it.
        #[arg(long)]
        image: Vec<PathBuf>,
        /// Seconds a boot may go without progress before it is killed.
        #[arg(long, default_value_t = 20.0)]
        timeout: f64,
    },
    /// Disassemble the ARM image's TLB and cache maintenance routines (capstone), with the
    /// coprocessor operations named, and check them: exit 1 if a routine in use is a stub or
    /// lacks its barriers (with `--defects tlb-flush-stub`, the seed's stub is in use).
    Disasm {
        /// Use this image instead of building qemu-runner/image.
        #[arg(long)]
        image: Option<PathBuf>,
    },
    /// Build a flat binary for a real Cortex-A7/A15 board with the sequence embedded; it
    /// prints its trace on the UART (`stagehand diff board.log native.trace` compares).
    Board {
        file: PathBuf,
        /// PL011 UART base.
        #[arg(long, value_parser = parse_addr)]
        uart: u64,
        /// GICv2 distributor base for the watchdog, or `none` (default: none).
        #[arg(long, value_parser = parse_addr)]
        gic: Option<u64>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// List the defect switches of every target (or of `--target`).
    Defects,
    /// List the targets: the stage-2 implementations under test, their profiles and ops.
    Targets,
}

/// A failure that decides the exit code.
pub(crate) enum Failure {
    /// Bad input (exit 2).
    Input(String),
    /// Something did not meet its expectation (exit 1); already reported.
    Found,
}

impl From<InputError> for Failure {
    fn from(e: InputError) -> Self {
        Failure::Input(e.to_string())
    }
}

/// `print!` that ends the process quietly when stdout is a closed pipe (`stagehand show | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = write!(stdout, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

macro_rules! outln {
    ($($arg:tt)*) => {{
        out!($($arg)*);
        out!("\n");
    }};
}

mod cmd;

/// Runs the command line of a program whose targets are `targets` (the first is the
/// default of `.s2` files without a `target` line), with the process's arguments.
pub fn main(targets: &[&'static crate::targets::Entry]) -> ExitCode {
    if let Err(e) = crate::targets::register(targets) {
        eprintln!("stagehand: {e}");
        return ExitCode::from(2);
    }
    if let Some(code) = crate::elsewhere::reexec() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let g = cli.global;
    let result = match cli.command {
        Command::Run { paths, ignore_expect, hang } => cmd::seq::run(&g, &paths, ignore_expect, hang),
        Command::Record { file, output } => cmd::seq::record(&g, &file, &output),
        Command::Replay { trace } => cmd::seq::replay(&trace),
        Command::Diff { a, b } => cmd::seq::diff(&a, &b),
        Command::Show { input } => cmd::seq::show(&g, &input),
        Command::Convert { input, output, to } => cmd::seq::convert(&g, &input, &output, to.as_deref()),
        Command::Expect { paths, write } => cmd::seq::expect(&g, &paths, write),
        Command::Digest { files, naive, seed, emit } => {
            cmd::fuzz::digest(&g, &files, naive, seed, emit.as_deref())
        }
        Command::Minimize { input, output, kind } => cmd::seq::minimize(&g, &input, &output, kind.as_deref()),
        Command::Triage { artifacts, out, snapshots } => cmd::fuzz::triage(&g, &artifacts, &out, &snapshots),
        Command::Seeds { paths, output, exclude } => {
            crate::triage::seeds(&paths, &exclude, &output, g.target)
                .map(|n| eprintln!("{n} seed(s) -> {}", output.display()))
                .map_err(Failure::from)
        }
        Command::Naive { seconds, seed, max_ops, hang, out } => {
            cmd::fuzz::naive(&g, seconds, seed, max_ops, hang, out.as_deref())
        }
        Command::Configs { dir } => cmd::fuzz::configs(&g, &dir),
        Command::Qemu { paths, image, timeout } => cmd::qemu::qemu(&g, &paths, &image, timeout),
        Command::QemuRandom { count, seed, max_ops, out, image, timeout } => {
            let r = cmd::qemu::RandomRun { count, seed, max_ops, out };
            cmd::qemu::qemu_random(&g, &r, &image, timeout)
        }
        Command::Disasm { image } => cmd::hw::disasm(&g, image),
        Command::Board { file, uart, gic, output } => cmd::hw::board(&g, &file, uart, gic, &output),
        Command::Defects => cmd::fuzz::defects(&g),
        Command::Targets => {
            if g.json {
                outln!("{}", crate::report::targets_json());
            } else {
                out!("{}", crate::report::targets_list());
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Found) => ExitCode::from(1),
        Err(Failure::Input(msg)) => {
            eprintln!("stagehand: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Loads a sequence (text, bytes or a trace's ops) with the global overrides applied.
pub(crate) fn load_sequence(g: &Global, path: &Path) -> Result<Sequence, Failure> {
    let campaign = g.campaign()?;
    let seq = match files::load(path, &|b| campaign.decode(b))? {
        Input::Text(s) | Input::Bytes(s) => s,
        Input::Trace(t) | Input::HardwareLog(t) => {
            let ops = t.steps.iter().map(|s| s.op).collect();
            Sequence { config: t.config, expect: Expect::CLEAN, inert: Vec::new(), ops }
        }
    };
    g.apply_seq(seq)
}

/// Loads a recorded trace (or a board's serial log).
pub(crate) fn load_trace(path: &Path) -> Result<Trace, Failure> {
    match files::load(path, &files::own_config)? {
        Input::Trace(t) | Input::HardwareLog(t) => Ok(t),
        _ => Err(Failure::Input(format!(
            "{}: not a stagehand trace (record one with `stagehand record`)",
            path.display()
        ))),
    }
}

/// Writes an output file atomically.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    files::write_atomic(path, bytes)
        .map_err(|e| Failure::Input(format!("{}: cannot write: {e}", path.display())))
}

/// Every `.s2` file under `paths`.
pub(crate) fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    let mut files = Vec::new();
    for p in paths {
        files.extend(files::collect(p)?);
    }
    // Files of a target that builds for another architecture only reach here from a
    // directory, when the program built for it is missing (harness::elsewhere): said, not run.
    let all = files.len();
    files.retain(|f| crate::elsewhere::of_file(f).is_none());
    if files.len() < all {
        eprintln!(
            "skipped {} file(s) of targets that build for another architecture only (`cargo xtask qemu-user` builds the program that runs them)",
            all - files.len()
        );
    }
    Ok(files)
}
