//! Fuzzing campaigns: building the targets, running libFuzzer with a progress display,
//! triaging what it finds, and the summary (AFL++'s campaigns: [`crate::afl`]).

use crate::{hang, run, setup, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The configuration of a campaign, as STAGEHAND_* variables and `stagehand` flags. Each
/// input's first byte chooses the target, walker, BBM mode and VMID width; a field set here
/// pins it for the whole campaign instead.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Defect switches (of whichever target an input chooses), or `none`.
    pub defects: String,
    /// Workarounds of filed findings (`all` when not set: campaigns look past what is filed).
    pub workarounds: Option<String>,
    /// Pin the target.
    pub target: Option<String>,
    /// Pin the VMID width.
    pub vmid_bits: Option<u8>,
    /// Pin `coherent` or `non-coherent`.
    pub walker: Option<String>,
    /// Pin strict (true) or relaxed BBM.
    pub strict_bbm: Option<bool>,
    /// Only this violation kind counts (time-to-bug trials).
    pub expect: Option<String>,
    /// Findings that are not crashes (`STAGEHAND_KNOWN`): [`KNOWN_FINDINGS`] for `demo` and
    /// `fuzz`, none for the smoke tests and time-to-bug trials.
    pub known: Option<String>,
}

/// The list of known findings campaigns run with.
pub const KNOWN_FINDINGS: &str = "corpus/known-findings.txt";

impl Settings {
    /// The environment a fuzz target reads its configuration from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let defects = if self.defects.is_empty() { "none".to_string() } else { self.defects.clone() };
        let mut env = vec![("STAGEHAND_DEFECTS", defects)];
        if let Some(w) = &self.workarounds {
            env.push(("STAGEHAND_WORKAROUNDS", w.clone()));
        }
        if let Some(t) = &self.target {
            env.push(("STAGEHAND_TARGET", t.clone()));
        }
        if let Some(b) = self.vmid_bits {
            env.push(("STAGEHAND_VMID_BITS", b.to_string()));
        }
        if let Some(w) = &self.walker {
            env.push(("STAGEHAND_WALKER", w.clone()));
        }
        if let Some(b) = self.strict_bbm {
            env.push(("STAGEHAND_STRICT_BBM", if b { "1" } else { "0" }.into()));
        }
        if let Some(k) = &self.expect {
            env.push(("STAGEHAND_EXPECT", k.clone()));
        }
        if let Some(k) = &self.known {
            env.push(("STAGEHAND_KNOWN", k.clone()));
        }
        env
    }

    /// The same configuration as `stagehand` flags.
    pub fn flags(&self) -> Vec<String> {
        let mut f = vec![
            "--defects".into(),
            if self.defects.is_empty() { "none".into() } else { self.defects.clone() },
        ];
        if let Some(t) = &self.target {
            f.extend(["--target".into(), t.clone()]);
        }
        if let Some(w) = &self.workarounds {
            f.extend(["--workarounds".into(), w.clone()]);
        }
        if let Some(b) = self.vmid_bits {
            f.extend(["--vmid-bits".into(), b.to_string()]);
        }
        if let Some(w) = &self.walker {
            f.extend(["--walker".into(), w.clone()]);
        }
        if self.strict_bbm == Some(true) {
            f.push("--strict-bbm".into());
        }
        f
    }

    /// One line for reports: pinned fields, and `any` where inputs choose.
    pub fn describe(&self) -> String {
        let any = |v: Option<String>| v.unwrap_or_else(|| "any".into());
        let known = self.known.as_ref().map_or(String::new(), |k| format!(", known findings from {k}"));
        format!(
            "defects {}, workarounds {}, target {}, vmid-bits {}, walker {}, bbm {}{known}",
            if self.defects.is_empty() { "none" } else { &self.defects },
            self.workarounds.as_deref().unwrap_or("all"),
            any(self.target.clone()),
            any(self.vmid_bits.map(|b| b.to_string())),
            any(self.walker.clone()),
            any(self.strict_bbm.map(|b| if b { "strict" } else { "relaxed" }.to_string())),
        )
    }
}

/// How a libFuzzer binary is instrumented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// No sanitizer, on stable; coverage on the code under test only ([`COVERED_CRATES`]).
    Plain,
    /// No sanitizer, on stable; coverage on every crate, as `cargo fuzz build` does.
    AllCrates,
    /// AddressSanitizer, on nightly (`cargo fuzz build`: every crate).
    Asan,
}

/// The crates whose edges guide a [`Build::Plain`] fuzzer: the code under test (`mmu`, the
/// target adapters and the third-party crate they drive). The harness, its oracles and
/// their dependencies run uninstrumented: their edges cost libFuzzer time on every
/// execution (a third of it with every crate instrumented) without telling it anything
/// about the code under test. Measured in `bench/results.md` and `bench/ttb.md`. `ax_cpu` is
/// left out: its coverage tables keep its unused trap handlers linked, whose symbols only an
/// OS provides; the `Stage2Pte` code it gives is instantiated, and covered, in the adapter.
pub const COVERED_CRATES: &[&str] = &[
    "mmu",
    "target_kvm_arm_2012",
    "target_aarch64_paging",
    "aarch64_paging",
    "target_page_table_generic",
    "page_table_generic",
];

/// The targets whose crates build for AArch64 only: their campaigns build the fuzz target
/// for AArch64 Linux and run it under qemu-aarch64, and the `stagehand` commands they need
/// re-run themselves there (`harness::native::elsewhere`).
pub const AARCH64_ONLY: &[&str] = &["page-table-generic"];

/// The Rust target of builds that run under qemu-aarch64.
pub const AARCH64_LINUX: &str = "aarch64-unknown-linux-gnu";

impl Settings {
    /// The campaign's target builds for AArch64 only.
    pub fn aarch64_only(&self) -> bool {
        self.target.as_deref().is_some_and(|t| AARCH64_ONLY.contains(&t))
    }
}

/// The command that runs a fuzz target built by [`build_target`] or [`build_aarch64`]: the
/// program itself, or qemu-aarch64 running it (qemu-user passes the environment on).
pub fn fuzzer(bin: &Path) -> Command {
    if bin.components().any(|c| c.as_os_str() == AARCH64_LINUX) {
        let mut cmd = Command::new("qemu-aarch64");
        cmd.args(["-L", "/usr/aarch64-linux-gnu"]).arg(bin);
        cmd
    } else {
        Command::new(bin)
    }
}

/// Builds cargo-fuzz target `target` for AArch64 Linux as [`Build::Plain`] builds it for the
/// host (libFuzzer's C++ with the cross compiler), installing the cross tools, and returns
/// the path of a copy under `target/fuzz-bin/aarch64-unknown-linux-gnu/`.
pub fn build_aarch64(target: &str) -> Result<PathBuf> {
    crate::qemu_user::setup()?;
    setup::apt(&[("g++-aarch64-linux-gnu", "aarch64-linux-gnu-g++")])?;
    let mut cmd = Command::new("cargo");
    cmd.args(["+stable", "build", "--release", "--manifest-path", "fuzz/Cargo.toml", "--bin", target])
        .args(["--target", AARCH64_LINUX, "--target-dir", "fuzz/target/covered"])
        .env("RUSTC_WRAPPER", std::env::current_exe()?)
        .env(WRAPPER_ENV, COVERED_CRATES.join(" "))
        .env("RUSTFLAGS", "--cfg fuzzing -Ccodegen-units=1 -Cdebuginfo=line-tables-only")
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc")
        .env("CC_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-gcc")
        .env("CXX_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-g++");
    run(&mut cmd)?;
    let built = PathBuf::from(format!("fuzz/target/covered/{AARCH64_LINUX}/release/{target}"));
    let dir = PathBuf::from("target/fuzz-bin").join(AARCH64_LINUX);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(&built, dir.join(target))?;
    Ok(dir.join(target))
}

/// The SanitizerCoverage flags `cargo fuzz build -s none --no-trace-compares` passes.
const SANCOV_FLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-simplifycfg-branch-fold-threshold=0",
    "-Cllvm-args=-sanitizer-coverage-stack-depth",
];

/// Set for the `rustc` runs of a [`Build::Plain`] build, whose `RUSTC_WRAPPER` is this
/// program: [`rustc_wrapper`] takes over `main`.
pub const WRAPPER_ENV: &str = "STAGEHAND_SANCOV_CRATES";

/// `RUSTC_WRAPPER` mode: runs rustc (`args[0]`) with `args[1..]`, plus the coverage flags
/// when the crate being compiled is one of `crates` (space-separated).
pub fn rustc_wrapper(args: &[String], crates: &str) -> std::process::ExitCode {
    let name = args.windows(2).find(|w| w[0] == "--crate-name").map(|w| w[1].as_str());
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    if name.is_some_and(|n| crates.split_whitespace().any(|c| c == n)) {
        cmd.args(SANCOV_FLAGS);
    }
    match cmd.status() {
        Ok(s) => std::process::ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("xtask rustc wrapper: cannot run {}: {e}", args[0]);
            std::process::ExitCode::FAILURE
        }
    }
}

/// The host's target triple (what `cargo fuzz` builds for).
pub fn host_triple() -> Result<String> {
    let out = Command::new("rustc").args(["+stable", "-vV"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().find_map(|l| l.strip_prefix("host: ")).ok_or("rustc -vV printed no host")?.to_owned())
}

/// Maximum input length given to libFuzzer by default: room for the up to 64 ops the
/// generating mutator writes (about 6 bytes each), as the naive generator draws them.
/// Measured against 128 and 2048 in `bench/ttb.md` (modes `len128`, `len2048`): longer
/// inputs also spread a campaign's fixed costs per execution over more ops.
pub const DEFAULT_MAX_LEN: usize = 512;

/// libFuzzer options every campaign and trial uses. `-len_control=0` lets inputs use the
/// whole length at once: every byte decodes to something, and growing lengths from 4 bytes
/// only delays the multi-op sequences bugs need (2-3x slower to find the seed defects).
pub const LIBFUZZER_OPTIONS: &[&str] = &["-len_control=0"];

/// Builds a cargo-fuzz target and returns the path of a copy that later builds of another
/// flavour will not overwrite.
pub fn build_target(target: &str, build: Build) -> Result<PathBuf> {
    let suffix = match build {
        Build::Plain => "",
        Build::AllCrates => "-all",
        Build::Asan => "-asan",
    };
    let built = match build {
        Build::Plain => {
            // Our own build of the cargo-fuzz crate, instrumenting the code under test only.
            let triple = host_triple()?;
            let mut cmd = Command::new("cargo");
            cmd.args([
                "+stable",
                "build",
                "--release",
                "--manifest-path",
                "fuzz/Cargo.toml",
                "--bin",
                target,
            ])
            .args(["--target", &triple, "--target-dir", "fuzz/target/covered"])
            .env("RUSTC_WRAPPER", std::env::current_exe()?)
            .env(WRAPPER_ENV, COVERED_CRATES.join(" "))
            .env("RUSTFLAGS", "--cfg fuzzing -Ccodegen-units=1 -Cdebuginfo=line-tables-only");
            run(&mut cmd)?;
            PathBuf::from(format!("fuzz/target/covered/{triple}/release/{target}"))
        }
        Build::AllCrates | Build::Asan => {
            setup::cargo_tool("cargo-fuzz", "fuzz")?;
            // Comparison tracing halves executions per second and did not find the seed
            // defects sooner: operands come from small tables, not magic values to solve.
            let (toolchain, extra): (&str, &[&str]) = if build == Build::Asan {
                setup::toolchain("nightly")?;
                ("+nightly", &["-s", "address"])
            } else {
                ("+stable", &["-s", "none", "--no-trace-compares"])
            };
            let mut cmd = Command::new("cargo");
            cmd.args([toolchain, "fuzz", "build", "-O"]).args(extra).arg(target);
            run(&mut cmd)?;
            PathBuf::from(format!("fuzz/target/{}/release/{target}", host_triple()?))
        }
    };
    let copy = PathBuf::from(format!("target/fuzz-bin/{target}{suffix}"));
    std::fs::create_dir_all("target/fuzz-bin")?;
    std::fs::copy(&built, &copy)?;
    Ok(copy)
}

/// Builds `stagehand` (release) and returns its path.
pub fn stagehand() -> Result<PathBuf> {
    harness_bin("stagehand")
}

/// Builds a binary of the `harness` package (release) and returns its path.
pub fn harness_bin(name: &str) -> Result<PathBuf> {
    run(Command::new("cargo").args(["build", "--release", "--quiet", "-p", "stagehand-cli", "--bin", name]))?;
    Ok(PathBuf::from("target/release").join(name))
}

/// Encodes `corpus/**/*.s2` (minus `exclude`; only `target`'s files when one is pinned) into
/// `dir` as seeds.
pub fn seeds(stagehand: &Path, dir: &Path, exclude: &[PathBuf], target: Option<&str>) -> Result {
    let _ = std::fs::remove_dir_all(dir);
    let mut cmd = Command::new(stagehand);
    cmd.args(["seeds", "corpus", "-o"]).arg(dir);
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    for x in exclude {
        cmd.arg("--exclude").arg(x);
    }
    cmd.stderr(Stdio::null());
    run(&mut cmd)
}

/// What a campaign did.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub seconds: f64,
    pub execs: u64,
    /// (seconds, coverage, features) samples from the status lines.
    pub coverage: Vec<(f64, u64, u64)>,
    /// Ops the target ran (its `stagehand-ops:` lines).
    pub ops: u64,
    pub corpus: u64,
    /// Crash artifacts and when they appeared (seconds after the start).
    pub artifacts: Vec<(PathBuf, f64)>,
    /// `stagehand configs --json` of the final corpus.
    pub configurations: Option<serde_json::Value>,
}

impl Stats {
    pub fn execs_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.execs as f64 / self.seconds
        } else {
            0.0
        }
    }
    pub fn ops_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The ops count of a `stagehand-ops: N ops in M execs` line.
fn ops_line(line: &str) -> Option<u64> {
    line.strip_prefix("stagehand-ops: ")?.split_whitespace().next()?.parse().ok()
}

/// Parses a status line: fork mode's `#N: cov: C ft: F corp: K exec/s: E
/// oom/timeout/crash: a/b/c time: Ts ...`, or a plain run's `#N\tNEW cov: C ft: F corp: K/Bb
/// ...`. Returns (executions, coverage, features, corpus, crashes in fork mode).
fn status(line: &str) -> Option<(u64, u64, u64, u64, Option<u64>)> {
    let rest = line.strip_prefix('#')?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let execs = rest[..digits].parse().ok()?;
    let rest = &rest[digits..];
    let field = |name: &str| -> Option<u64> {
        let v = rest.split(name).nth(1)?.split_whitespace().next()?;
        v.split('/').next()?.parse().ok()
    };
    let crashes = rest
        .split("oom/timeout/crash: ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next()?.rsplit('/').next()?.parse().ok());
    Some((execs, field("cov: ")?, field("ft: ").unwrap_or(0), field("corp: ")?, crashes))
}

/// Runs a libFuzzer campaign for `seconds` in which crashes do not stop it, with a live
/// progress display on a terminal and plain lines otherwise. With one job it is a plain
/// libFuzzer run, restarted on the same corpus after each crash: fork mode (`jobs` > 1)
/// restarts its child on a new corpus subset every few seconds and merges each time, which
/// costs about half the executions. A hung fuzzer is killed a minute after its deadline.
pub fn campaign(
    bin: &Path,
    s: &Settings,
    seconds: u64,
    jobs: usize,
    seeds: Option<&Path>,
    work: &Path,
    max_len: usize,
) -> Result<Stats> {
    let _ = std::fs::remove_dir_all(work);
    let (corpus, artifacts) = (work.join("corpus"), work.join("artifacts"));
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    // The campaign's own copy of the seeds: a seed that crashes is dropped from it, so a
    // restart does not stop on the same seed again.
    let own_seeds = work.join("seeds");
    if let Some(seeds) = seeds {
        std::fs::create_dir_all(&own_seeds)?;
        for e in std::fs::read_dir(seeds)? {
            let p = e?.path();
            std::fs::copy(&p, own_seeds.join(p.file_name().ok_or("seed name")?))?;
        }
    }
    let seeds = seeds.map(|_| own_seeds.as_path());
    eprintln!("+ {} {} … ({})", bin.display(), corpus.display(), s.describe());
    let start = Instant::now();
    let wall = SystemTime::now();
    let stats = Arc::new(Mutex::new(Stats::default()));
    // Executions of the finished plain runs.
    let mut base = 0;
    loop {
        let left = seconds.saturating_sub(start.elapsed().as_secs());
        if left == 0 {
            break;
        }
        let mut cmd = fuzzer(bin);
        cmd.arg(&corpus);
        if let Some(seeds) = seeds {
            cmd.arg(seeds);
        }
        if jobs > 1 {
            cmd.arg(format!("-fork={jobs}")).arg("-ignore_crashes=1");
        }
        cmd.arg(format!("-max_total_time={left}"))
            .arg(format!("-timeout={}", hang::CAMPAIGN_SECONDS))
            .arg(format!("-max_len={max_len}"))
            .args(LIBFUZZER_OPTIONS)
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .envs(s.env())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let reader = {
            let stats = Arc::clone(&stats);
            let stderr = child.stderr.take().ok_or("no stderr")?;
            let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
            let artifacts = artifacts.clone();
            std::thread::spawn(move || {
                let mut last_print = Instant::now();
                let mut run_ops = 0;
                for line in BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
                    if let Some(n) = ops_line(&line) {
                        // Cumulative within one run of the target.
                        stats.lock().expect("not poisoned").ops += n - run_ops.min(n);
                        run_ops = n;
                        continue;
                    }
                    let Some((execs, cov, ft, corp, crashes)) = status(&line) else { continue };
                    let execs = base + execs;
                    let t = start.elapsed().as_secs_f64();
                    let ops = {
                        let mut st = stats.lock().expect("not poisoned");
                        st.execs = execs;
                        st.corpus = corp;
                        st.coverage.push((t, cov, ft));
                        st.ops
                    };
                    if !tty && last_print.elapsed() < Duration::from_secs(10) {
                        continue;
                    }
                    let crashes = crashes
                        .unwrap_or_else(|| std::fs::read_dir(&artifacts).map_or(0, |d| d.count() as u64));
                    let msg = format!(
                        "[{t:>5.0}s/{seconds}s] execs {execs} ({:.0}/s, {:.0} ops/s)  cov {cov}  features {ft}  corpus {corp}  crashes {crashes}",
                        execs as f64 / t.max(1e-3),
                        ops as f64 / t.max(1e-3)
                    );
                    if tty {
                        eprint!("\r{msg}   ");
                        let _ = std::io::stderr().flush();
                    } else {
                        eprintln!("{msg}");
                        last_print = Instant::now();
                    }
                }
                if tty {
                    eprintln!();
                }
            })
        };
        let deadline = start + Duration::from_secs(seconds + 60);
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("libFuzzer did not stop a minute after its deadline: killing it");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = reader.join();
        base = stats.lock().map_err(|_| "poisoned")?.execs;
        if jobs > 1 || Instant::now() > deadline {
            break;
        }
        drop_crashing_inputs(&artifacts, &[&corpus, &own_seeds])?;
    }
    let mut st =
        Arc::try_unwrap(stats).map_err(|_| "reader still running")?.into_inner().map_err(|_| "poisoned")?;
    st.seconds = start.elapsed().as_secs_f64();
    st.corpus = std::fs::read_dir(&corpus)?.count() as u64;
    let mut found: Vec<(PathBuf, f64)> = std::fs::read_dir(&artifacts)?
        .filter_map(|e| {
            let e = e.ok()?;
            let at = e.metadata().ok()?.modified().ok()?.duration_since(wall).ok()?.as_secs_f64();
            Some((e.path(), at))
        })
        .collect();
    found.sort_by(|a, b| a.1.total_cmp(&b.1));
    st.artifacts = found;
    Ok(st)
}

/// Removes from `dirs` every input whose bytes are those of an artifact.
fn drop_crashing_inputs(artifacts: &Path, dirs: &[&Path]) -> Result {
    let mut crashing = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(artifacts)? {
        crashing.insert(std::fs::read(e?.path())?);
    }
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if crashing.contains(&std::fs::read(&p)?) {
                std::fs::remove_file(&p)?;
            }
        }
    }
    Ok(())
}

/// One artifact's triage result, from `stagehand triage --json`.
#[derive(Clone, Debug)]
pub struct Triaged {
    pub artifact: Option<String>,
    pub status: String,
    pub kind: Option<String>,
    pub site: Option<String>,
    pub file: Option<String>,
}

/// Triages artifacts with `stagehand triage`.
pub fn triage(
    stagehand: &Path,
    s: &Settings,
    artifacts: &[PathBuf],
    out: &Path,
    snapshots: &Path,
) -> Result<Vec<Triaged>> {
    if artifacts.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = Command::new(stagehand);
    cmd.envs(s.env())
        .arg("triage")
        .args(s.flags())
        .arg("--json")
        .arg("--out")
        .arg(out)
        .arg("--snapshots")
        .arg(snapshots)
        .args(artifacts);
    let output = cmd.output()?;
    if !output.status.success() {
        return Err(format!("stagehand triage failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let list: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_owned);
    Ok(list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| Triaged {
                    artifact: text(v, "artifact"),
                    status: text(v, "status").unwrap_or_default(),
                    kind: text(v, "kind"),
                    site: text(v, "site"),
                    file: text(v, "file"),
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Prints the campaign summary.
pub fn summary(stagehand: &Path, s: &Settings, st: &Stats, seeds: usize, triaged: &[Triaged]) {
    println!("\ncampaign summary ({})", s.describe());
    println!("  time          {:.1} s", st.seconds);
    println!(
        "  executions    {} ({:.0}/s); {} ops ({:.0}/s, reported by the target)",
        st.execs,
        st.execs_per_sec(),
        st.ops,
        st.ops_per_sec()
    );
    println!("  corpus        {seeds} seed(s) -> {} input(s)", st.corpus);
    if let (Some(first), Some(last)) = (st.coverage.first(), st.coverage.last()) {
        let marks: Vec<String> = [0.1, 0.25, 0.5, 1.0]
            .iter()
            .filter_map(|f| st.coverage.iter().find(|(t, _, _)| *t >= f * st.seconds).or(st.coverage.last()))
            .map(|(t, c, f)| format!("{c}/{f} at {t:.0}s"))
            .collect();
        println!(
            "  coverage      {} -> {} edges, {} -> {} features (edges/features: {})",
            first.1,
            last.1,
            first.2,
            last.2,
            marks.join(", ")
        );
    }
    match st.artifacts.first() {
        Some((_, t)) => println!("  first finding after {t:.2} s"),
        None => println!("  first finding none"),
    }
    let mut groups: Vec<(String, String, usize)> = Vec::new();
    for t in triaged.iter().filter(|t| t.site.is_some()) {
        let site = t.site.clone().unwrap_or_default();
        match groups.iter_mut().find(|(s, _, _)| *s == site) {
            Some((_, _, n)) => *n += 1,
            None => groups.push((site, t.file.clone().unwrap_or_default(), 1)),
        }
    }
    let hangs: Vec<&PathBuf> = st.artifacts.iter().map(|(p, _)| p).filter(|p| hang::is_hang(p)).collect();
    println!("  findings      {} artifact(s), {} distinct", st.artifacts.len() - hangs.len(), groups.len());
    for (site, file, n) in &groups {
        println!("    {site:<36} {n:>4} artifact(s) -> {file}");
    }
    hang::list(stagehand, s, &hangs);
    if let Some(reached) = &st.configurations {
        println!("  configurations the corpus reached ({} inputs):", reached["inputs"]);
        if let Some(m) = reached["configurations"].as_object() {
            for (field, values) in m {
                let v: Vec<String> = values
                    .as_object()
                    .map(|o| o.iter().map(|(k, n)| format!("{k} {n}")).collect())
                    .unwrap_or_default();
                println!("    {field:<10} {}", v.join(", "));
            }
        }
    }
    let clean = triaged.iter().filter(|t| t.status == "clean").count();
    if clean > 0 {
        println!("    {clean} artifact(s) did not reproduce");
    }
}

/// Where a campaign keeps its files and writes its findings.
pub struct Dirs {
    pub work: PathBuf,
    pub regressions: PathBuf,
    pub snapshots: PathBuf,
}

/// `cargo xtask fuzz` and the main job: a bounded campaign from the corpus seeds, then triage.
pub fn fuzz(
    s: &Settings,
    seconds: u64,
    jobs: usize,
    max_len: usize,
    dirs: &Dirs,
) -> Result<(Stats, Vec<Triaged>)> {
    let bin = if s.aarch64_only() {
        // The AArch64 `stagehand` that this host's re-runs itself with for the target.
        crate::qemu_user::build()?;
        build_aarch64("ops")?
    } else {
        build_target("ops", Build::Plain)?
    };
    let stagehand = stagehand()?;
    let seed_dir = PathBuf::from("target/fuzz/seeds");
    seeds(&stagehand, &seed_dir, &[], s.target.as_deref())?;
    let nseeds = std::fs::read_dir(&seed_dir)?.count();
    let mut st = campaign(&bin, s, seconds, jobs, Some(&seed_dir), &dirs.work, max_len)?;
    let out = Command::new(&stagehand)
        .envs(s.env())
        .args(["configs", "--json"])
        .arg(dirs.work.join("corpus"))
        .output()?;
    st.configurations = serde_json::from_slice(&out.stdout).ok();
    let arts: Vec<PathBuf> =
        st.artifacts.iter().map(|(p, _)| p.clone()).filter(|p| !hang::is_hang(p)).collect();
    let triaged = triage(&stagehand, s, &arts, &dirs.regressions, &dirs.snapshots)?;
    summary(&stagehand, s, &st, nseeds, &triaged);
    Ok((st, triaged))
}

/// The smoke of a campaign under qemu-aarch64 (`cargo xtask qemu-user` runs it):
/// `page-table-generic` with its workarounds on finds nothing in `seconds`; with them off
/// it finds the table freed before its invalidation, and triages it.
pub fn smoke_aarch64_only(seconds: u64) -> Result {
    let tmp = std::env::temp_dir().join(format!("stagehand-smoke-a64-{}", std::process::id()));
    let dirs = Dirs {
        work: "target/fuzz/smoke-aarch64".into(),
        regressions: tmp.join("regressions"),
        snapshots: tmp.join("snapshots"),
    };
    let ptg = |workarounds: &str, expect: Option<&str>| Settings {
        defects: "none".into(),
        workarounds: Some(workarounds.into()),
        target: Some("page-table-generic".into()),
        expect: expect.map(str::to_owned),
        ..Settings::default()
    };
    let (st, _) = fuzz(&ptg("all", None), seconds, 1, DEFAULT_MAX_LEN, &dirs)?;
    if !st.artifacts.is_empty() {
        return Err(format!(
            "fuzz smoke: {} finding(s) in page-table-generic with its workarounds on (see {}/artifacts)",
            st.artifacts.len(),
            dirs.work.display()
        )
        .into());
    }
    let clean = (st.execs, st.seconds);
    let (st, triaged) = fuzz(&ptg("none", Some("freed-before-tlbi")), seconds, 1, DEFAULT_MAX_LEN, &dirs)?;
    if st.artifacts.is_empty() || !triaged.iter().any(|t| t.kind.as_deref() == Some("freed-before-tlbi")) {
        return Err("fuzz smoke: page-table-generic's table freed before its TLBI was not found".into());
    }
    println!(
        "fuzz smoke under qemu-aarch64: page-table-generic ran clean with its workarounds ({} executions, {:.0}/s); \
         without them its table freed before the TLBI was found after {:.2} s",
        clean.0,
        clean.0 as f64 / clean.1.max(1e-3),
        st.artifacts[0].1
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// The CI smoke: ~30 s of `ops` on the corrected code must find nothing, and ~30 s with
/// `clear-nonpresent` must find it and triage it to `model-mismatch`.
pub fn smoke(seconds: u64) -> Result {
    let tmp = std::env::temp_dir().join(format!("stagehand-smoke-{}", std::process::id()));
    let dirs = Dirs {
        work: "target/fuzz/smoke".into(),
        regressions: tmp.join("regressions"),
        snapshots: tmp.join("snapshots"),
    };
    let kvm = || Some("kvm-arm-2012".to_string());
    let (st, _) = fuzz(
        &Settings { defects: "none".into(), target: kvm(), ..Settings::default() },
        seconds,
        1,
        DEFAULT_MAX_LEN,
        &dirs,
    )?;
    if !st.artifacts.is_empty() {
        return Err(format!(
            "fuzz smoke: {} finding(s) on the corrected port (see target/fuzz/smoke/artifacts)",
            st.artifacts.len()
        )
        .into());
    }
    let buggy = Settings { defects: "clear-nonpresent".into(), target: kvm(), ..Settings::default() };
    let (st, triaged) = fuzz(&buggy, seconds, 1, DEFAULT_MAX_LEN, &dirs)?;
    let kinds: Vec<&str> = triaged.iter().filter_map(|t| t.kind.as_deref()).collect();
    if st.artifacts.is_empty() || !kinds.contains(&"model-mismatch") {
        return Err(format!(
            "fuzz smoke: clear-nonpresent not found or not triaged to model-mismatch (kinds: {kinds:?})"
        )
        .into());
    }
    let files = std::fs::read_dir(&dirs.regressions)?.count();
    println!(
        "fuzz smoke: the corrected port ran clean; clear-nonpresent was found after {:.2} s and triaged into {files} regression file(s)",
        st.artifacts[0].1
    );
    // The third-party target: with its workarounds on (and the one finding no caller can
    // avoid known), a campaign finds nothing; with them off, its filed findings come out.
    let paging = |workarounds: &str| Settings {
        defects: "none".into(),
        workarounds: Some(workarounds.into()),
        target: Some("aarch64-paging".into()),
        known: Some(KNOWN_FINDINGS.into()),
        ..Settings::default()
    };
    let (st, _) = fuzz(&paging("all"), seconds, 1, DEFAULT_MAX_LEN, &dirs)?;
    if !st.artifacts.is_empty() {
        return Err(format!(
            "fuzz smoke: {} finding(s) in aarch64-paging with its workarounds on (see target/fuzz/smoke/artifacts)",
            st.artifacts.len()
        )
        .into());
    }
    let (st, triaged) = fuzz(&paging("none"), seconds, 1, DEFAULT_MAX_LEN, &dirs)?;
    let kinds: Vec<&str> = triaged.iter().filter_map(|t| t.kind.as_deref()).collect();
    if st.artifacts.is_empty() || !kinds.iter().any(|k| k.contains("combined") || *k == "access-mismatch") {
        return Err(format!(
            "fuzz smoke: aarch64-paging's IPAS2E1IS-only invalidation was not found (kinds: {kinds:?})"
        )
        .into());
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &kinds {
        *counts.entry(*k).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} ({n})")).collect();
    println!("fuzz smoke: aarch64-paging findings after {:.2} s: {}", st.artifacts[0].1, counts.join(", "));
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Runs `.clusterfuzzlite/build.sh` outside Docker (stable, no sanitizer) into a scratch
/// `$OUT`, then runs each target it built on its seed corpus.
pub fn clusterfuzzlite_build() -> Result {
    setup::cargo_tool("cargo-fuzz", "fuzz")?;
    let out = std::env::temp_dir().join(format!("stagehand-cflite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    run(Command::new("bash")
        .arg(".clusterfuzzlite/build.sh")
        .env("OUT", &out)
        .env("FUZZ_TOOLCHAIN", "stable")
        .env("FUZZ_BUILD_ARGS", "-s none --no-trace-compares"))?;
    for target in ["ops", "parse"] {
        let seeds = out.join(format!("{target}_seed_corpus"));
        let zip = out.join(format!("{target}_seed_corpus.zip"));
        if !seeds.is_dir() && !zip.is_file() {
            return Err(format!("build.sh produced no seed corpus for {target}").into());
        }
        // Artifacts of a failing run stay in the scratch `$OUT`, not in the checkout.
        let prefix = format!("-artifact_prefix={}/", out.display());
        if seeds.is_dir() {
            run(Command::new(out.join(target))
                .arg("-runs=0")
                .arg(&prefix)
                .arg(&seeds)
                .stderr(Stdio::null()))?;
        } else {
            run(Command::new(out.join(target)).arg("-runs=200").arg(&prefix).stderr(Stdio::null()))?;
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}
