//! `stagehand`: check, record, replay, diff, show, convert and minimize stage-2 op sequences.
//!
//! Exit codes are a contract: 0 when everything met its expectation (or agreed), 1 when
//! something did not (a violation, a divergence), 2 on bad input.

use clap::{Args, Parser, Subcommand};
use harness::files::{self, Input, InputError};
use harness::minimize::minimize;
use harness::render;
use harness::run::{self, kinds, meets};
use harness::text::{self, format_op, Sequence};
use harness_core::op::{Config, Expect, Walker};
use harness_core::trace::{first_divergence, Divergence, Trace};
use harness_core::violation::{Kind, Violation};
use mmu::Defects;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
struct Global {
    /// Defect switches to turn on, replacing the header's set (`none` turns all off).
    #[arg(long, global = true, value_parser = text::parse_defects)]
    defects: Option<Defects>,
    /// VMID width in bits (1..=8), replacing the header's.
    #[arg(long, global = true, value_parser = text::parse_vmid_bits)]
    vmid_bits: Option<u8>,
    /// Table walker coherency: `coherent` or `non-coherent`.
    #[arg(long, global = true, value_parser = text::parse_walker)]
    walker: Option<Walker>,
    /// Flag valid-to-valid output address changes (break-before-make).
    #[arg(long, global = true)]
    strict_bbm: bool,
    /// RAM base of the memory layout (a board's), replacing the header's.
    #[arg(long, global = true, value_parser = parse_ram)]
    ram: Option<u64>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
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
    fn apply(&self, mut c: Config) -> Config {
        if let Some(d) = self.defects {
            c.defects = d;
        }
        if let Some(b) = self.vmid_bits {
            c.vmid_bits = b;
        }
        if let Some(w) = self.walker {
            c.walker = w;
        }
        c.strict_bbm |= self.strict_bbm;
        c
    }

    /// Applies the overrides to a loaded sequence, rebasing its frames for `--ram`.
    fn apply_seq(&self, mut s: Sequence) -> Sequence {
        s.config = self.apply(s.config);
        if let Some(r) = self.ram {
            s.rebase(r);
        }
        s
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
    /// The naive baseline of the time-to-bug benchmark: random sequences without feedback
    /// until a finding (under STAGEHAND_*) or the time cap. Prints one JSON line.
    Naive {
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Longest sequence, in ops.
        #[arg(long, default_value_t = 64)]
        max_ops: usize,
    },
    /// Run sequences on QEMU in ARM Hyp mode, where the same code programs real stage-2
    /// tables, and compare each hardware trace with its native trace.
    Qemu {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Use this image instead of building qemu-runner/image.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Seconds a boot may take before it is killed (plus 20 ms per op).
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
    /// List the seed defect switches.
    Defects,
}

/// A failure that decides the exit code.
enum Failure {
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let g = cli.global;
    let result = match cli.command {
        Command::Run { paths, ignore_expect } => cmd_run(&g, &paths, ignore_expect),
        Command::Record { file, output } => cmd_record(&g, &file, &output),
        Command::Replay { trace } => cmd_replay(&trace),
        Command::Diff { a, b } => cmd_diff(&a, &b),
        Command::Show { input } => cmd_show(&g, &input),
        Command::Convert { input, output, to } => cmd_convert(&g, &input, &output, to.as_deref()),
        Command::Minimize { input, output, kind } => cmd_minimize(&g, &input, &output, kind.as_deref()),
        Command::Triage { artifacts, out, snapshots } => cmd_triage(&g, &artifacts, &out, &snapshots),
        Command::Seeds { paths, output, exclude } => harness::triage::seeds(&paths, &exclude, &output)
            .map(|n| eprintln!("{n} seed(s) -> {}", output.display()))
            .map_err(Failure::from),
        Command::Naive { seconds, seed, max_ops } => cmd_naive(&g, seconds, seed, max_ops),
        Command::Qemu { paths, image, timeout } => cmd_qemu(&g, &paths, image, timeout),
        Command::Disasm { image } => cmd_disasm(&g, image),
        Command::Board { file, uart, gic, output } => cmd_board(&g, &file, uart, gic, &output),
        Command::Defects => {
            cmd_defects(&g);
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

/// Loads a sequence (text or bytes) with the global overrides applied.
fn load_sequence(g: &Global, path: &Path) -> Result<Sequence, Failure> {
    Ok(g.apply_seq(match files::load(path, Config::default())? {
        Input::Text(s) | Input::Bytes(s) => s,
        Input::Trace(t) | Input::HardwareLog(t) => {
            let ops = t.steps.iter().map(|s| s.op).collect();
            Sequence { config: t.config, expect: Expect::Clean, ops }
        }
    }))
}

fn load_trace(path: &Path) -> Result<Trace, Failure> {
    match files::load(path, Config::default())? {
        Input::Trace(t) | Input::HardwareLog(t) => Ok(t),
        _ => Err(Failure::Input(format!(
            "{}: not a stagehand trace (record one with `stagehand record`)",
            path.display()
        ))),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    files::write_atomic(path, bytes)
        .map_err(|e| Failure::Input(format!("{}: cannot write: {e}", path.display())))
}

struct FileResult {
    path: PathBuf,
    ops: usize,
    expect: Expect,
    ok: bool,
    violations: Vec<Violation>,
}

fn cmd_run(g: &Global, paths: &[PathBuf], ignore_expect: bool) -> Result<(), Failure> {
    let mut files = Vec::new();
    let mut any_dir = false;
    for p in paths {
        any_dir |= p.is_dir();
        files.extend(files::collect(p)?);
    }
    // Parse everything first: bad input is reported before any run, with exit 2.
    let mut seqs = Vec::new();
    for f in &files {
        seqs.push((f.clone(), load_sequence(g, f)?));
    }
    let bar = (any_dir && !g.json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let bar = indicatif::ProgressBar::new(seqs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("static template"),
        );
        bar
    });
    let start = Instant::now();
    let mut results = Vec::new();
    let mut total_ops = 0;
    for (path, seq) in &seqs {
        if let Some(bar) = &bar {
            bar.set_message(path.display().to_string());
        }
        let exec = run::run(seq.config, &seq.ops, true);
        let expect = if ignore_expect { Expect::Clean } else { seq.expect };
        let ok = meets(&expect, exec.violations());
        total_ops += seq.ops.len();
        if !ok && !g.json {
            let report = failure_report(path, seq, expect, &exec);
            match &bar {
                Some(bar) => bar.println(report),
                None => eprint!("{report}"),
            }
        }
        results.push(FileResult {
            path: path.clone(),
            ops: seq.ops.len(),
            expect,
            ok,
            violations: exec.violations().to_vec(),
        });
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let elapsed = start.elapsed().as_secs_f64();
    if g.json {
        print_json(&results);
    } else {
        print_summary(&results, total_ops, elapsed);
    }
    if results.iter().all(|r| r.ok) {
        Ok(())
    } else {
        Err(Failure::Found)
    }
}

fn expect_name(e: &Expect) -> String {
    match e {
        Expect::Clean => "clean".into(),
        Expect::Violation(k) => k.name().into(),
    }
}

fn failure_report(path: &Path, seq: &Sequence, expect: Expect, exec: &run::NativeExecutor) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let v = exec.violations();
    let found = if v.is_empty() { "no violation".to_string() } else { format!("{} violation(s)", v.len()) };
    let _ = writeln!(out, "FAIL {}: expected {}, found {found}", path.display(), expect_name(&expect));
    let Some(first) = v.first() else {
        let _ = writeln!(
            out,
            "  the sequence ran clean; the defect it targets may be off (config: {})\n",
            render::config_line(&seq.config)
        );
        return out;
    };
    for v in v.iter().take(12) {
        let op = seq.ops.get(v.op as usize).map_or_else(|| "(end of sequence)".to_string(), format_op);
        let _ = writeln!(out, "  op #{} `{op}`\n    {}", v.op, render::violation_line(v));
    }
    if v.len() > 12 {
        let _ = writeln!(out, "  … and {} more", v.len() - 12);
    }
    let _ = writeln!(out, "  ops leading to op #{}:", first.op);
    let from = (first.op as usize).saturating_sub(8);
    for (i, s) in exec.steps().iter().enumerate().take(first.op as usize + 1).skip(from) {
        let _ = writeln!(out, "    #{i} {} => {}", format_op(&s.op), s.result);
    }
    let _ = writeln!(out, "  tables after the run:");
    let mut dump = String::new();
    let roots: Vec<_> = exec.roots().collect();
    let mut exec_host = exec_host_reader(exec);
    for (vm, root) in roots {
        render::tables(&mut dump, &mut exec_host, vm, root);
    }
    for line in dump.lines() {
        let _ = writeln!(out, "    {line}");
    }
    out.push('\n');
    out
}

/// Reads table memory of a finished run (from the recorded events, so no mutable borrow).
fn exec_host_reader(exec: &run::NativeExecutor) -> impl FnMut(mmu::Pa) -> u64 + '_ {
    let replayed = render::Replayed::from_trace(&Trace::new(*exec.config(), exec.steps().to_vec()));
    move |pa| replayed.read(pa)
}

fn print_summary(results: &[FileResult], ops: usize, secs: f64) {
    let width = results.iter().map(|r| r.path.display().to_string().len()).max().unwrap_or(4).max(4);
    outln!("{:<6} {:<width$} {:>5}  {:<20} violations", "result", "file", "ops", "expect");
    for r in results {
        let status = if r.ok { "ok" } else { "FAIL" };
        let found: Vec<&str> = kinds(&r.violations).iter().map(|k| k.name()).collect();
        let found = if found.is_empty() { "-".to_string() } else { found.join(", ") };
        outln!(
            "{status:<6} {:<width$} {:>5}  {:<20} {found}",
            r.path.display(),
            r.ops,
            expect_name(&r.expect)
        );
    }
    let passed = results.iter().filter(|r| r.ok).count();
    let rate = if secs > 0.0 { ops as f64 / secs } else { 0.0 };
    outln!(
        "\n{} file(s): {passed} met their expectation, {} did not; {ops} ops in {:.3} s ({:.0} ops/s)",
        results.len(),
        results.len() - passed,
        secs,
        rate
    );
    let mut by_kind: Vec<(Kind, usize)> = Vec::new();
    for r in results {
        for k in kinds(&r.violations) {
            match by_kind.iter_mut().find(|(x, _)| *x == k) {
                Some((_, n)) => *n += 1,
                None => by_kind.push((k, 1)),
            }
        }
    }
    if !by_kind.is_empty() {
        by_kind.sort();
        let list: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} ({n} file(s))")).collect();
        outln!("violations found: {}", list.join(", "));
    }
}

fn print_json(results: &[FileResult]) {
    let files: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let violations: Vec<serde_json::Value> = r
                .violations
                .iter()
                .map(|v| serde_json::json!({"op": v.op, "kind": v.kind().name(), "title": v.kind().title(), "detail": v.detail.to_string()}))
                .collect();
            serde_json::json!({"file": r.path.display().to_string(), "ok": r.ok, "expect": expect_name(&r.expect), "ops": r.ops, "violations": violations})
        })
        .collect();
    let ok = results.iter().all(|r| r.ok);
    outln!("{}", serde_json::json!({"ok": ok, "files": files}));
}

fn cmd_record(g: &Global, file: &Path, output: &Path) -> Result<(), Failure> {
    let seq = load_sequence(g, file)?;
    let exec = run::run(seq.config, &seq.ops, true);
    let trace = exec.trace();
    let bytes = trace.to_bytes();
    write(output, &bytes)?;
    let events: usize = trace.steps.iter().map(|s| s.events.len()).sum();
    eprintln!(
        "recorded {} op(s), {events} event(s), {} violation(s) -> {} ({} bytes)",
        trace.steps.len(),
        exec.violations().len(),
        output.display(),
        bytes.len()
    );
    Ok(())
}

fn cmd_replay(path: &Path) -> Result<(), Failure> {
    let recorded = load_trace(path)?;
    let ops: Vec<_> = recorded.steps.iter().map(|s| s.op).collect();
    let replayed = run::run(recorded.config, &ops, true).trace();
    match first_divergence(&recorded, &replayed) {
        None => {
            outln!("replay of {}: {} step(s) identical", path.display(), recorded.steps.len());
            Ok(())
        }
        Some(d) => {
            out!("{}", divergence_report(&d, ("recorded", &recorded), ("replayed", &replayed)));
            Err(Failure::Found)
        }
    }
}

fn cmd_diff(a: &Path, b: &Path) -> Result<(), Failure> {
    let is_log = |p: &Path| matches!(files::load(p, Config::default()), Ok(Input::HardwareLog(_)));
    if is_log(a) != is_log(b) {
        // Hardware against native: the rules of `stagehand qemu`.
        let (hw_path, native_path) = if is_log(a) { (a, b) } else { (b, a) };
        let (hw, native) = (load_trace(hw_path)?, load_trace(native_path)?);
        let c = harness::hwdiff::compare(&native, &hw);
        return match c.divergence {
            None => {
                outln!(
                    "{} (hardware) agrees with {} (native): {} step(s)",
                    hw_path.display(),
                    native_path.display(),
                    hw.steps.len()
                );
                for (i, note) in &c.notes {
                    outln!("  #{i}: {note:?}: {}", hw.steps[*i].result);
                }
                Ok(())
            }
            Some(d) => {
                outln!(
                    "first divergence at step #{}: {}\n  native:   {}\n  hardware: {}",
                    d.step,
                    d.what,
                    d.native,
                    d.hardware
                );
                Err(Failure::Found)
            }
        };
    }
    let (ta, tb) = (load_trace(a)?, load_trace(b)?);
    match first_divergence(&ta, &tb) {
        None => {
            outln!("{} and {} agree ({} step(s))", a.display(), b.display(), ta.steps.len());
            Ok(())
        }
        Some(d) => {
            let (na, nb) = (a.display().to_string(), b.display().to_string());
            out!("{}", divergence_report(&d, (&na, &ta), (&nb, &tb)));
            Err(Failure::Found)
        }
    }
}

/// The first divergence, with the ops before it and both sides' versions of the step.
fn divergence_report(d: &Divergence, (na, a): (&str, &Trace), (nb, b): (&str, &Trace)) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let step = match *d {
        Divergence::Config => {
            let _ = writeln!(
                out,
                "configurations differ:\n  {na}: {}\n  {nb}: {}",
                render::config_line(&a.config),
                render::config_line(&b.config)
            );
            return out;
        }
        Divergence::Op { step }
        | Divergence::Result { step }
        | Divergence::Event { step, .. }
        | Divergence::Violations { step }
        | Divergence::Length { step } => step,
    };
    let what = match d {
        Divergence::Op { .. } => "a different op".to_string(),
        Divergence::Result { .. } => "a different result".to_string(),
        Divergence::Event { event, .. } => format!("event {event}"),
        Divergence::Violations { .. } => "different violations".to_string(),
        Divergence::Length { .. } => "one trace ends here".to_string(),
        Divergence::Config => unreachable!(),
    };
    let _ = writeln!(out, "first divergence at step #{step}: {what}");
    for i in step.saturating_sub(3)..step {
        if let Some(s) = a.steps.get(i) {
            let _ = writeln!(out, "  #{i} {} => {}", format_op(&s.op), s.result);
        }
    }
    for (name, t) in [(na, a), (nb, b)] {
        let _ = writeln!(out, "--- {name}:");
        match t.steps.get(step) {
            Some(s) => render::step(&mut out, step, s, true),
            None => {
                let _ = writeln!(out, "(ends after {} step(s))", t.steps.len());
            }
        }
    }
    if let Divergence::Event { step, event } = *d {
        let ea = a.steps[step].events.get(event).map_or("(none)".into(), |e| e.to_string());
        let eb = b.steps[step].events.get(event).map_or("(none)".into(), |e| e.to_string());
        let _ = writeln!(out, "event {event}:\n  {na}: {ea}\n  {nb}: {eb}");
    }
    out
}

fn cmd_show(g: &Global, input: &Path) -> Result<(), Failure> {
    let trace = match files::load(input, Config::default())? {
        Input::Trace(t) | Input::HardwareLog(t) => t,
        Input::Text(s) | Input::Bytes(s) => {
            let s = g.apply_seq(s);
            outln!("{}", text::format_header(&s.config, &s.expect).trim_end());
            run::run(s.config, &s.ops, true).trace()
        }
    };
    out!("{}", render::trace(&trace));
    outln!("final tables:");
    out!("{}", render::Replayed::from_trace(&trace).dump());
    Ok(())
}

fn cmd_convert(g: &Global, input: &Path, output: &Path, to: Option<&str>) -> Result<(), Failure> {
    let seq = load_sequence(g, input)?;
    let as_text = match to {
        Some(t) => t == "text",
        None => output.extension().is_some_and(|e| e == "s2"),
    };
    let bytes = if as_text {
        let mut s = format!("# converted from {}\n", input.display());
        s.push_str(&text::print(&seq));
        s.into_bytes()
    } else {
        harness_core::bytes::encode(&seq.ops, &seq.config.layout)
    };
    write(output, &bytes)?;
    eprintln!("{} op(s) -> {} ({})", seq.ops.len(), output.display(), if as_text { "text" } else { "bytes" });
    Ok(())
}

fn cmd_minimize(g: &Global, input: &Path, output: &Path, kind: Option<&str>) -> Result<(), Failure> {
    let seq = load_sequence(g, input)?;
    let kind = match kind {
        Some(k) => {
            Kind::from_name(k).ok_or_else(|| Failure::Input(format!("unknown violation kind `{k}`")))?
        }
        None => match seq.expect {
            Expect::Violation(k) => k,
            Expect::Clean => {
                let exec = run::run(seq.config, &seq.ops, false);
                match exec.violations().first() {
                    Some(v) => v.kind(),
                    None => {
                        eprintln!("{}: runs clean, nothing to minimize", input.display());
                        return Err(Failure::Found);
                    }
                }
            }
        },
    };
    let small = minimize(seq.config, &seq.ops, kind);
    let min = Sequence { config: seq.config, expect: Expect::Violation(kind), ops: small };
    if !meets(&min.expect, run::run(min.config, &min.ops, false).violations()) {
        eprintln!("{}: the sequence does not produce `{kind}`", input.display());
        return Err(Failure::Found);
    }
    let mut out = format!("# minimized from {} ({} ops): {}\n", input.display(), seq.ops.len(), kind.title());
    out.push_str(&text::print(&min));
    write(output, out.as_bytes())?;
    eprintln!(
        "minimized {} -> {} op(s), keeping `{kind}` -> {}",
        seq.ops.len(),
        min.ops.len(),
        output.display()
    );
    Ok(())
}

fn cmd_triage(g: &Global, artifacts: &[PathBuf], out: &Path, snapshots: &Path) -> Result<(), Failure> {
    use harness::triage::Outcome;
    let base = harness::fuzz::Campaign::from_env().map_err(Failure::Input)?.config;
    let repo = std::env::current_dir().map_err(|e| Failure::Input(format!("current directory: {e}")))?;
    let results = harness::triage::triage(artifacts, g.apply(base), out, snapshots, &repo)?;
    if g.json {
        let list: Vec<serde_json::Value> = results
            .iter()
            .map(|(artifact, o)| {
                let (status, kind, site, file) = match o {
                    Outcome::Created { kind, site, file, .. } => ("new", Some(kind), Some(site), Some(file)),
                    Outcome::Updated { kind, site, file, .. } => ("shorter", Some(kind), Some(site), Some(file)),
                    Outcome::Duplicate { kind, site, file } => ("known", Some(kind), Some(site), Some(file)),
                    Outcome::NotReproduced => ("clean", None, None, None),
                };
                serde_json::json!({
                    "artifact": artifact.display().to_string(), "status": status,
                    "kind": kind.map(|k| k.name()), "site": site, "file": file.map(|f| f.display().to_string()),
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    let mut by_site: Vec<(String, usize)> = Vec::new();
    for (artifact, outcome) in &results {
        let line = match outcome {
            Outcome::Created { kind, site, file, from_ops, ops } => {
                format!("new      {kind:<18} {site:<32} {from_ops} -> {ops} op(s) {}", file.display())
            }
            Outcome::Updated { kind, site, file, from_ops, ops } => {
                format!("shorter  {kind:<18} {site:<32} {from_ops} -> {ops} op(s) {}", file.display())
            }
            Outcome::Duplicate { kind, site, file } => {
                format!("known    {kind:<18} {site:<32} {}", file.display())
            }
            Outcome::NotReproduced => "clean    (does not reproduce under this configuration)".to_string(),
        };
        outln!("{line}  <- {}", artifact.display());
        if let Outcome::Created { site, .. }
        | Outcome::Updated { site, .. }
        | Outcome::Duplicate { site, .. } = outcome
        {
            match by_site.iter_mut().find(|(s, _)| s == site) {
                Some((_, n)) => *n += 1,
                None => by_site.push((site.clone(), 1)),
            }
        }
    }
    let sites: Vec<String> = by_site.iter().map(|(s, n)| format!("{s} ({n})")).collect();
    outln!("{} artifact(s), {} distinct finding(s): {}", results.len(), by_site.len(), sites.join(", "));
    Ok(())
}

fn cmd_naive(g: &Global, seconds: f64, seed: u64, max_ops: usize) -> Result<(), Failure> {
    let mut campaign = harness::fuzz::Campaign::from_env().map_err(Failure::Input)?;
    campaign.config = g.apply(campaign.config);
    let mut gen = harness::fuzz::Naive::new(seed, max_ops);
    let start = Instant::now();
    let mut execs: u64 = 0;
    let found = loop {
        if start.elapsed().as_secs_f64() >= seconds {
            break None;
        }
        let ops = gen.sequence(&campaign.config.layout);
        execs += 1;
        if let Some(f) = harness::fuzz::check_ops(&campaign, &ops) {
            break Some(f);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    outln!(
        "{}",
        serde_json::json!({"found": found.is_some(), "seconds": secs, "execs": execs, "finding": found})
    );
    Ok(())
}

fn cmd_qemu(g: &Global, paths: &[PathBuf], image: Option<PathBuf>, timeout: f64) -> Result<(), Failure> {
    use harness::hwdiff::{compare, Note};
    use harness::qemu::{self, Outcome};
    // Per-file lines go to stderr under --json, which prints one JSON object on stdout.
    macro_rules! report {
        ($($a:tt)*) => {
            if g.json { eprintln!($($a)*) } else { outln!($($a)*) }
        };
    }
    let mut files = Vec::new();
    for p in paths {
        files.extend(files::collect(p)?);
    }
    let mut seqs = Vec::new();
    for f in &files {
        seqs.push(load_sequence(g, f)?);
    }
    qemu::ensure_qemu().map_err(Failure::Input)?;
    let image = match image {
        Some(i) => i,
        None => qemu::build_image(None).map_err(Failure::Input)?,
    };
    let jobs: Vec<harness_core::batch::Job> =
        seqs.iter().map(|s| harness_core::batch::Job { config: s.config, ops: s.ops.clone() }).collect();
    let overhead = qemu::boot(&image, &[], Duration::from_secs_f64(timeout)).map_err(Failure::Input)?.wall;
    let start = Instant::now();
    let limit = |rest: &[harness_core::batch::Job]| {
        Duration::from_secs_f64(timeout + 0.02 * rest.iter().map(|j| j.ops.len()).sum::<usize>() as f64)
    };
    let (outcomes, walls) = qemu::run_jobs(&image, &jobs, limit).map_err(Failure::Input)?;
    let wall = start.elapsed().as_secs_f64();
    let (mut agree, mut confirmed, mut failed) = (0, 0, 0);
    for ((path, seq), outcome) in files.iter().zip(&seqs).zip(&outcomes) {
        let native = run::run(seq.config, &seq.ops, true).trace();
        let hw = match outcome {
            Outcome::Trace(t) => t,
            Outcome::Failed(why) => {
                failed += 1;
                report!("FAIL   {}: {why}", path.display());
                continue;
            }
        };
        let c = compare(&native, hw);
        if let Some(d) = &c.divergence {
            failed += 1;
            let op = seq.ops.get(d.step).map_or("(end)".to_string(), format_op);
            report!("DIFFER {}: first divergence at step #{} `{op}`: {}", path.display(), d.step, d.what);
            report!("         native:   {}", d.native);
            report!("         hardware: {}", d.hardware);
            let result = hw.steps.get(d.step).map(|s| &s.result);
            let insn =
                seq.ops.get(d.step).and_then(|op| harness::disasm::faulting_instruction(&image, op, result));
            if let Some(insn) = insn {
                report!("         faulting guest instruction: {insn}");
            }
            continue;
        }
        agree += 1;
        let stale: Vec<usize> =
            c.notes.iter().filter(|(_, n)| *n == Note::StaleConfirmed).map(|(i, _)| *i).collect();
        let dropped = c.notes.iter().filter(|(_, n)| *n == Note::StaleDropped).count();
        let level = c.notes.iter().filter(|(_, n)| *n == Note::S1WalkLevel).count();
        let mut notes = Vec::new();
        if !stale.is_empty() {
            confirmed += 1;
            for &i in &stale {
                let (n, h) = (&native.steps[i].result, &hw.steps[i].result);
                notes.push(format!(
                    "stale read confirmed on hardware at #{i} `{}`: {h} (native: {n})",
                    format_op(&seq.ops[i])
                ));
            }
        }
        if dropped > 0 {
            notes.push(format!(
                "{dropped} stale access(es) not reproduced by QEMU (it had flushed the TLB entry, or it models no cache; expected)"
            ));
        }
        if level > 0 {
            notes.push(format!(
                "{level} stage-1 walk abort(s) reported at the stage-1 level (QEMU quirk; expected)"
            ));
        }
        if notes.is_empty() {
            report!("agree  {} ({} steps)", path.display(), native.steps.len());
        } else {
            report!("agree  {} ({} steps)", path.display(), native.steps.len());
            for n in notes {
                report!("         {n}");
            }
        }
    }
    let run_wall: f64 = walls.iter().map(Duration::as_secs_f64).sum();
    let booted = (run_wall - overhead.as_secs_f64() * walls.len() as f64).max(1e-6);
    if g.json {
        outln!(
            "{}",
            serde_json::json!({
                "files": files.len(), "agree": agree, "confirmed_stale": confirmed, "failed": failed,
                "boots": walls.len(), "boot_overhead_ms": overhead.as_secs_f64() * 1e3,
                "seqs_per_sec_booted": files.len() as f64 / booted, "wall_seconds": wall,
            })
        );
        return if failed == 0 { Ok(()) } else { Err(Failure::Found) };
    }
    outln!(
        "\n{} file(s): {agree} agree with their native traces ({confirmed} with stale reads confirmed on hardware), {failed} do not",
        files.len()
    );
    outln!(
        "QEMU: {} boot(s), boot overhead {:.0} ms, {:.0} sequences/s once booted, {:.2} s wall for the whole run",
        walls.len(),
        overhead.as_secs_f64() * 1e3,
        files.len() as f64 / booted,
        wall
    );
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::Found)
    }
}

fn cmd_disasm(g: &Global, image: Option<PathBuf>) -> Result<(), Failure> {
    use harness::disasm;
    let image = match image {
        Some(i) => i,
        None => harness::qemu::build_image(None).map_err(Failure::Input)?,
    };
    let routines = disasm::routines(&image).map_err(Failure::Input)?;
    // Under tlb-flush-stub the seed's stub stands where __kvm_tlb_flush_vmid should be.
    let stub = g.defects.is_some_and(|d| d.contains(Defects::TLB_FLUSH_STUB));
    let in_use = |name: &str| match name {
        "stagehand_tlb_flush_vmid_stub" => stub,
        "stagehand_tlb_flush_vmid" => !stub,
        _ => true,
    };
    let mut failed = false;
    for r in &routines {
        out!("{}", disasm::render(r));
        let problems = disasm::check(r);
        let verdict = match (problems.is_empty(), in_use(&r.name)) {
            (true, _) => "ok".to_string(),
            (false, true) => {
                failed = true;
                format!("FAIL: {}", problems.join("; "))
            }
            (false, false) => format!("not in use in this configuration ({})", problems.join("; ")),
        };
        outln!("  => {verdict}\n");
    }
    if stub {
        outln!("with tlb-flush-stub, __kvm_tlb_flush_vmid is stagehand_tlb_flush_vmid_stub: changed entries are never invalidated");
    }
    if failed {
        Err(Failure::Found)
    } else {
        Ok(())
    }
}

fn cmd_board(g: &Global, file: &Path, uart: u64, gic: Option<u64>, output: &Path) -> Result<(), Failure> {
    let ram = g
        .ram
        .ok_or_else(|| Failure::Input("board: --ram <ADDR> is required (the board's RAM base)".into()))?;
    let seq = load_sequence(g, file)?;
    let batch = harness_core::batch::Batch {
        jobs: vec![harness_core::batch::Job { config: seq.config, ops: seq.ops.clone() }],
    };
    let blob = std::env::temp_dir().join(format!("stagehand-board-{}.bin", std::process::id()));
    write(&blob, &batch.to_bytes())?;
    let board = harness::qemu::Board {
        ram: Some(ram),
        uart: Some(uart),
        gic: Some(gic.unwrap_or(0)),
        embed: Some(blob.clone()),
    };
    let elf = harness::qemu::build_image(Some(&board)).map_err(Failure::Input)?;
    let _ = std::fs::remove_file(&blob);
    let flat = harness::qemu::flat_binary(&elf, ram).map_err(Failure::Input)?;
    write(output, &flat)?;
    outln!(
        "{}: {} bytes, linked at {} with {} op(s) of {} embedded",
        output.display(),
        flat.len(),
        text::hex(ram),
        seq.ops.len(),
        file.display()
    );
    outln!("entry: the first byte, in Hyp mode (HYP/PL2; U-Boot must run non-secure in Hyp, e.g. `bootm_boot_mode=nonsec`)");
    outln!("load and start with U-Boot, then capture the serial log:");
    outln!(
        "  loady {} ; go {}        (or: tftp {} {} ; go {})",
        text::hex(ram),
        text::hex(ram),
        text::hex(ram),
        output.display(),
        text::hex(ram)
    );
    outln!("the image prints `S2:` lines and ends with `stagehand: exit 0`; then compare:");
    outln!(
        "  stagehand record --ram {} {} -o native.trace && stagehand diff board.log native.trace",
        text::hex(ram),
        file.display()
    );
    Ok(())
}

fn cmd_defects(g: &Global) {
    if g.json {
        let list: Vec<_> =
            Defects::ALL.iter().map(|(_, n, d)| serde_json::json!({"name": n, "description": d})).collect();
        outln!("{}", serde_json::Value::Array(list));
        return;
    }
    for (_, name, line) in Defects::ALL {
        outln!("{name:<20} {line}");
    }
}
