//! `cargo xtask ttb`: time to bug, libFuzzer against the naive generator in one run. The
//! bugs: every `kvm-arm-2012` defect switch (only the switch on), and each filed finding of
//! a target with workarounds (only that finding's workaround off, the others on, as
//! campaigns run). Each bug's trials pin its target, as a campaign on the crate under test
//! does (`--any-target`: the first byte chooses, as in the default two-target campaign);
//! walker, BBM mode and VMID width are what each input's first byte chooses; the known
//! findings are not crashes.
//! A trial counts any violation on the bug's target: with the bug off, that target runs
//! clean. K trials per mode, from an empty corpus and from the corpus seeds (without the
//! bug's own trigger or regression files). Modes: `libfuzzer` (what campaigns run),
//! `naive` (random sequences from the decoder's distribution, no feedback), and for the
//! ablation `no-features`, `no-<family>` (one state-feedback family off), `bytes` (byte
//! mutation only), `ops` (the op-level mutator on) and `no-edges` (generation without
//! output addresses at a descriptor's edge). Writes `bench/ttb.md`,
//! `bench/ttb.json` and a survival plot.

use crate::fuzz::{self, Build, Settings, LIBFUZZER_OPTIONS};
use crate::hang;
use crate::{setup, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a trial searches: the naive generator, or libFuzzer with some environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mode {
    pub name: String,
    pub env: Vec<(&'static str, String)>,
    pub naive: bool,
    /// libFuzzer's `-max_len`, when the mode sets it (`len128`, `len2048`).
    pub max_len: Option<usize>,
}

/// The state-feedback families (`harness_core::feedback`).
pub const FAMILIES: &[&str] = &["outcome", "tables", "pending", "bbm", "vmid", "memslots", "pairs", "ranges"];

impl Mode {
    pub fn parse(name: &str) -> Result<Mode> {
        let env = |k: &'static str, v: &str| vec![(k, v.to_string())];
        if let Some(n) = name.strip_prefix("len").and_then(|n| n.parse().ok()) {
            return Ok(Mode { name: name.to_string(), env: Vec::new(), naive: false, max_len: Some(n) });
        }
        if let Some(n) = name.strip_prefix("edges").filter(|n| n.parse::<usize>().is_ok()) {
            return Ok(Mode {
                name: name.to_string(),
                env: env("STAGEHAND_EDGES", n),
                naive: false,
                max_len: None,
            });
        }
        let (env, naive) = match name {
            "libfuzzer" => (Vec::new(), false),
            "naive" => (Vec::new(), true),
            "bytes" => (env("STAGEHAND_MUTATOR", "bytes"), false),
            "ops" => (env("STAGEHAND_MUTATOR", "ops"), false),
            "no-edges" => (env("STAGEHAND_EDGES", "0"), false),
            "no-features" => (env("STAGEHAND_FEATURES", "none"), false),
            n => match n.strip_prefix("no-").filter(|f| FAMILIES.contains(f)) {
                Some(f) => (env("STAGEHAND_FEATURES", &format!("all,-{f}")), false),
                None => {
                    return Err(format!(
                        "unknown mode `{n}` (libfuzzer, naive, bytes, ops, no-edges, edges<N>, no-features, no-<{}>, len<N>)",
                        FAMILIES.join("|")
                    )
                    .into())
                }
            },
        };
        Ok(Mode { name: name.to_string(), env, naive, max_len: None })
    }
}

/// One bug of the benchmark.
#[derive(Clone, Debug)]
pub struct Target {
    /// `switch` (kvm-arm-2012) or `target/workaround` (a filed finding).
    pub name: String,
    pub settings: Settings,
    /// Corpus files (relative to `corpus/`) left out of the seeds: the bug's own trigger.
    pub exclude: Vec<PathBuf>,
}

/// Findings that show only in builds with overflow checks, which the benchmark's release
/// builds (libFuzzer's and the naive generator's) cannot see: their workarounds are not
/// benchmarked (`cli/tests/overflow_checks.rs` holds them).
const OVERFLOW_CHECKS_ONLY: &[&str] = &["aarch64-paging/empty-range-at-zero"];

/// The kvm-arm-2012 switches (`corpus/defects/*.s2`, each its trigger) and the workarounds
/// of every target that has some (`stagehand targets --json`), but [`OVERFLOW_CHECKS_ONLY`];
/// with `pin`, each bug's trials pin its target.
fn targets(stagehand: &Path, only: Option<&str>, pin: bool) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    let mut switches: Vec<String> = std::fs::read_dir("corpus/defects")?
        .filter_map(|e| e.ok()?.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    switches.sort();
    for d in switches {
        out.push(Target {
            settings: Settings {
                defects: d.clone(),
                target: pin.then(|| "kvm-arm-2012".to_string()),
                expect: Some("kvm-arm-2012:".into()),
                known: Some(fuzz::KNOWN_FINDINGS.into()),
                ..Settings::default()
            },
            exclude: vec![PathBuf::from(format!("defects/{d}.s2"))],
            name: d,
        });
    }
    let o = Command::new(stagehand).args(["--json", "targets"]).output()?;
    let list: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    for t in list.as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or_default();
        let all: Vec<&str> =
            t["workarounds"].as_array().into_iter().flatten().filter_map(|w| w.as_str()).collect();
        let regressions: Vec<PathBuf> = std::fs::read_dir("corpus/regressions")?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with(&format!("{name}-")))
            .map(|f| PathBuf::from("regressions").join(f))
            .collect();
        // A target that builds for AArch64 only runs pinned in either case, under
        // qemu-aarch64: this host's decoder cannot choose it.
        let pinned = (pin || fuzz::AARCH64_ONLY.contains(&name)).then(|| name.to_string());
        for w in all.iter().filter(|w| !OVERFLOW_CHECKS_ONLY.contains(&format!("{name}/{w}").as_str())) {
            let others: Vec<&str> = all.iter().copied().filter(|x| x != w).collect();
            out.push(Target {
                name: format!("{name}/{w}"),
                settings: Settings {
                    defects: "none".into(),
                    workarounds: Some(if others.is_empty() { "none".into() } else { others.join(",") }),
                    target: pinned.clone(),
                    expect: Some(format!("{name}:")),
                    known: Some(fuzz::KNOWN_FINDINGS.into()),
                    ..Settings::default()
                },
                exclude: regressions.clone(),
            });
        }
    }
    if let Some(list) = only {
        let want: Vec<&str> = list.split(',').collect();
        out.retain(|t| want.contains(&t.name.as_str()));
        if out.len() != want.len() {
            return Err(format!("--bugs: some of {want:?} are not bugs of the benchmark").into());
        }
    }
    Ok(out)
}

/// One trial's result.
#[derive(Clone, Debug)]
pub struct Trial {
    pub bug: String,
    pub mode: String,
    pub seeds: bool,
    pub trial: usize,
    pub found: bool,
    /// Found as a hang ([`crate::hang`]): an input that did not return, and that bug's.
    pub hang: bool,
    pub seconds: f64,
    pub execs: u64,
}

fn fuzz_trial(
    bin: &Path,
    t: &Target,
    mode: &Mode,
    trial: usize,
    o: &Options,
    seeds: Option<&Path>,
) -> Result<Trial> {
    let cap = o.cap;
    let dir = std::env::temp_dir().join(format!(
        "stagehand-ttb-{}-{}-{}-{}-{trial}",
        std::process::id(),
        t.name.replace('/', "_"),
        mode.name,
        if seeds.is_some() { "seeds" } else { "empty" }
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let artifacts = dir.join("artifacts");
    std::fs::create_dir_all(&artifacts)?;
    // The trial's corpus stays in memory (no corpus directory): it is thrown away after the
    // trial, and writing each new input as a file cost about 0.5 ms on this machine's disk,
    // which doubled the time of the shallow bugs (0.19 s against 0.09 s on `root-page0-only`,
    // the same executions). The seeds are read from their directory.
    let mut seed_files: Vec<String> = Vec::new();
    if let Some(seeds) = seeds {
        for e in std::fs::read_dir(seeds)? {
            seed_files.push(std::path::absolute(e?.path())?.display().to_string());
        }
        seed_files.sort();
    }
    let start = Instant::now();
    let mut cmd = fuzz::fuzzer(bin);
    if !seed_files.is_empty() {
        cmd.arg(format!("-seed_inputs={}", seed_files.join(",")));
    }
    let out = cmd
        .arg(format!("-max_total_time={cap}"))
        // An input that does not return is a hang, which counts if it is the bug's.
        .arg(format!("-timeout={}", hang::TRIAL_SECONDS))
        .arg(format!("-seed={}", trial + 1))
        .arg(format!("-max_len={}", mode.max_len.unwrap_or(o.max_len)))
        .args(LIBFUZZER_OPTIONS)
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .envs(t.settings.env())
        .envs(mode.env.iter().map(|(k, v)| (*k, v.as_str())))
        // A crash's symbolized backtrace took ~90 ms here (reporting, not finding): off, so
        // that the wall time is the search and the start-up.
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let seconds = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let execs = stderr
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0);
    let names: Vec<PathBuf> = std::fs::read_dir(&artifacts)?.filter_map(|e| Some(e.ok()?.path())).collect();
    let mut found =
        names.iter().any(|n| n.file_name().is_some_and(|f| f.to_string_lossy().starts_with("crash-")));
    let mut hung = false;
    if let (false, Some(input)) = (found, names.iter().find(|n| hang::is_hang(n))) {
        hung = seconds <= cap as f64 && hang::fuzz_input_is_the_bugs(bin, &t.settings.env(), input)?;
        found = hung;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Trial {
        bug: t.name.clone(),
        mode: mode.name.clone(),
        seeds: seeds.is_some(),
        trial,
        found,
        hang: hung,
        seconds,
        execs,
    })
}

fn naive_trial(stagehand: &Path, t: &Target, trial: usize, cap: u64) -> Result<Trial> {
    // Timed from spawn to exit, like the libFuzzer trials.
    let start = Instant::now();
    // Killed 30 s after its cap: a sequence that never returns is a miss.
    let out = Command::new("timeout")
        .arg((cap + 30).to_string())
        .arg(stagehand)
        .args(["naive", "--seconds", &cap.to_string(), "--seed", &(trial + 1).to_string()])
        .args(["--hang", &hang::TRIAL_SECONDS.to_string()])
        .envs(t.settings.env())
        .stderr(Stdio::null())
        .output()?;
    let seconds = start.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut found = v["found"].as_bool().unwrap_or(false);
    let hung = found && v["hang"] == true;
    if hung {
        // The hanging sequence, in the JSON line, checked as a file.
        let file = std::env::temp_dir().join(format!(
            "stagehand-ttb-hang-{}-{}-{trial}.s2",
            std::process::id(),
            t.name.replace('/', "_")
        ));
        std::fs::write(&file, v["sequence"].as_str().unwrap_or_default())?;
        found = seconds <= cap as f64 && hang::naive_file_is_the_bugs(stagehand, &file)?;
        let _ = std::fs::remove_file(&file);
    }
    Ok(Trial {
        bug: t.name.clone(),
        mode: "naive".into(),
        seeds: false,
        trial,
        found,
        hang: hung && found,
        seconds,
        execs: v["execs"].as_u64().unwrap_or(0),
    })
}

/// Median time and median executions, each on its own (the trial at the median time need
/// not be the one at the median executions), with censoring: trials that did not find the
/// bug count as +infinity in both.
fn median(trials: &[&Trial]) -> Option<(f64, u64)> {
    let mut times: Vec<f64> =
        trials.iter().map(|t| if t.found { t.seconds } else { f64::INFINITY }).collect();
    let mut execs: Vec<u64> = trials.iter().map(|t| if t.found { t.execs } else { u64::MAX }).collect();
    times.sort_by(f64::total_cmp);
    execs.sort_unstable();
    let (t, e) = (*times.get(times.len() / 2)?, *execs.get(execs.len() / 2)?);
    (t.is_finite() && e != u64::MAX).then_some((t, e))
}

/// The benchmark's options.
pub struct Options {
    pub trials: usize,
    pub cap: u64,
    pub parallel: usize,
    pub bugs: Option<String>,
    /// Empty corpus, seeds, or both.
    pub from: Vec<bool>,
    pub modes: Vec<Mode>,
    /// Where to write (`bench/ttb` by default; ablations elsewhere).
    pub out: String,
    /// libFuzzer's `-max_len`.
    pub max_len: usize,
    /// With [`Options::keep`]: only these bugs run; the others' trials come from that file.
    pub rerun: Option<String>,
    /// An earlier `ttb.json` of the same settings whose trials are kept for the bugs not rerun.
    pub keep: Option<String>,
    /// Pin each bug's target (else each input's first byte chooses it).
    pub pin: bool,
}

/// The trials of `path` (a `ttb.json`) for bugs not in `rerun`.
fn kept(path: &str, rerun: &[&str]) -> Result<Vec<Trial>> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let rows = doc["trials"].as_array().ok_or_else(|| format!("{path}: no trials"))?;
    let mut out = Vec::new();
    for r in rows {
        let bug = r["bug"].as_str().ok_or_else(|| format!("{path}: a trial without its bug"))?;
        if rerun.contains(&bug) {
            continue;
        }
        out.push(Trial {
            bug: bug.to_string(),
            mode: r["mode"].as_str().unwrap_or_default().to_string(),
            seeds: r["from"] == "seeds",
            trial: r["trial"].as_u64().unwrap_or(0) as usize,
            found: r["found"] == true,
            hang: r["hang"] == true,
            seconds: r["seconds"].as_f64().unwrap_or(0.0),
            execs: r["execs"].as_u64().unwrap_or(0),
        });
    }
    Ok(out)
}

/// Runs the benchmark.
pub fn ttb(o: &Options) -> Result {
    setup::plot_font()?;
    let bin = fuzz::build_target("ops", Build::Plain)?;
    let stagehand = fuzz::stagehand()?;
    let targets = targets(&stagehand, o.bugs.as_deref(), o.pin)?;
    let pinned = |t: &Target| t.settings.aarch64_only();
    // The AArch64 builds, for a target that builds there only.
    let bin_aarch64 = if targets.iter().any(pinned) {
        crate::qemu_user::build()?;
        Some(fuzz::build_aarch64("ops")?)
    } else {
        None
    };
    let rerun: Vec<&str> = o.rerun.as_deref().map(|r| r.split(',').collect()).unwrap_or_default();
    let earlier = match &o.keep {
        Some(path) => kept(path, &rerun)?,
        None => Vec::new(),
    };
    let mut jobs = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        if o.keep.is_some() && !rerun.contains(&t.name.as_str()) {
            continue;
        }
        let seeds = PathBuf::from(format!("target/fuzz/ttb-seeds/{}", t.name.replace('/', "_")));
        fuzz::seeds(&stagehand, &seeds, &t.exclude, t.settings.target.as_deref())?;
        for trial in 0..o.trials {
            for m in &o.modes {
                // The naive generator has no corpus.
                let from: &[bool] = if m.naive { &[false] } else { &o.from };
                for &s in from {
                    jobs.push((i, m.clone(), trial, s.then(|| seeds.clone())));
                }
            }
        }
    }
    let total = jobs.len();
    eprintln!(
        "time to bug: {} bug(s) x {} trial(s), modes {}, cap {} s, {} at a time: {total} trials",
        targets.len(),
        o.trials,
        o.modes.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
        o.cap,
        o.parallel
    );
    let queue = Arc::new(Mutex::new(jobs.into_iter()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..o.parallel.max(1) {
            let (queue, results, targets, stagehand) = (&queue, &results, &targets, &stagehand);
            let (bin, bin_aarch64) = (&bin, &bin_aarch64);
            // The guard is dropped inside the closure, not held for the loop body.
            let next = move || queue.lock().ok().and_then(|mut q| q.next());
            scope.spawn(move || {
                while let Some((i, mode, trial, seeds)) = next() {
                    let t = &targets[i];
                    let r = if mode.naive {
                        naive_trial(stagehand, t, trial, o.cap)
                    } else {
                        let bin = bin_aarch64.as_ref().filter(|_| pinned(t)).unwrap_or(bin);
                        fuzz_trial(bin, t, &mode, trial, o, seeds.as_deref())
                    };
                    let mut done = results.lock().expect("not poisoned");
                    match r {
                        Ok(r) => {
                            eprintln!(
                                "[{:>4}/{total} {:>5.0}s] {:<34} {:<12} {:<5} #{trial}: {}",
                                done.len() + 1,
                                started.elapsed().as_secs_f64(),
                                t.name,
                                mode.name,
                                if r.seeds { "seeds" } else { "empty" },
                                if r.found {
                                    format!("found in {:.2} s, {} execs", r.seconds, r.execs)
                                } else {
                                    format!("not found in {} s", o.cap)
                                }
                            );
                            done.push(r);
                        }
                        Err(e) => eprintln!("{} {} #{trial}: trial failed: {e}", t.name, mode.name),
                    }
                }
            });
        }
    });
    let mut results = Arc::try_unwrap(results)
        .map_err(|_| "workers still running")?
        .into_inner()
        .map_err(|_| "poisoned")?;
    results.extend(earlier);
    results.sort_by(|a, b| (&a.bug, &a.mode, a.seeds, a.trial).cmp(&(&b.bug, &b.mode, b.seeds, b.trial)));
    std::fs::create_dir_all("bench")?;
    write_json(&o.out, &targets, &results, o)?;
    let md = markdown(&targets, &results, o);
    std::fs::write(format!("{}.md", o.out), &md)?;
    plot(&targets, &results, o.cap, Path::new(&format!("{}-survival.svg", o.out)))?;
    print!("{md}");
    eprintln!("wrote {0}.md, {0}.json, {0}-survival.svg", o.out);
    Ok(())
}

fn write_json(out: &str, targets: &[Target], results: &[Trial], o: &Options) -> Result {
    let (cpu, cores) = setup::machine();
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|r| serde_json::json!({"bug": r.bug, "mode": r.mode, "from": if r.seeds { "seeds" } else { "empty" }, "trial": r.trial, "found": r.found, "hang": r.hang, "seconds": r.seconds, "execs": r.execs}))
        .collect();
    let bugs: serde_json::Map<String, serde_json::Value> = targets
        .iter()
        .map(|t| (t.name.clone(), serde_json::json!({"config": t.settings.describe()})))
        .collect();
    let doc = serde_json::json!({
        "machine": {"cpu": cpu, "cores": cores},
        "trials_per_mode": o.trials, "cap_seconds": o.cap, "max_len": o.max_len,
        "bugs": bugs, "trials": rows,
    });
    std::fs::write(format!("{out}.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(())
}

/// The trials of one bug, mode and corpus.
fn cell<'a>(results: &'a [Trial], bug: &str, mode: &str, seeds: bool) -> Vec<&'a Trial> {
    results
        .iter()
        .filter(|r| r.bug == bug && r.mode == mode && (r.seeds == seeds || mode == "naive"))
        .collect()
}

fn show(v: &[&Trial], cap: u64) -> String {
    let found = v.iter().filter(|r| r.found).count();
    let hangs = match v.iter().filter(|r| r.hang).count() {
        0 => String::new(),
        n => format!(" ({n} by a hang)"),
    };
    match median(v) {
        Some((s, e)) => format!("{found}/{}{hangs}, {s:.2} s, {e}", v.len()),
        None => format!("{found}/{}{hangs}, > {cap} s", v.len()),
    }
}

fn markdown(targets: &[Target], results: &[Trial], o: &Options) -> String {
    let (cpu, cores) = setup::machine();
    let cap = o.cap;
    let modes: Vec<&str> = o.modes.iter().map(|m| m.name.as_str()).collect();
    let mut md = String::from("# Time to bug\n\n");
    md += &format!(
        "Generated by `cargo xtask ttb --trials {} --cap {cap} --modes {} --max-len {}{}` on {cpu} ({cores} cores); every trial on one core, \
         {} at a time. {} Walker, BBM mode and VMID width are what each input's first byte chooses (the naive \
         generator draws that byte at random); a `kvm-arm-2012` \
         switch is the only switch on; a filed finding (`target/workaround`) has its workaround off and the target's \
         other workarounds on, as campaigns run; the known findings (`corpus/known-findings.txt`) are not crashes. A \
         trial counts any violation on the bug's target (that target runs clean without the bug). libFuzzer (`ops`, no \
         sanitizer, coverage on the code under test, the state feedback, `-max_len={} -len_control=0`) \
         starts from an empty corpus or from the corpus seeds without the bug's trigger and regression files; the naive \
         baseline draws 1 to 64 ops per sequence from the decoder's own distribution, with no feedback. Each cell: \
         trials that found the bug, then the median time (wall clock from process start to exit, so start-up and corpus \
         loading count; libFuzzer runs with `RUST_BACKTRACE=0`, as a backtrace at the crash only reports, and keeps \
         its corpus in memory, as a trial's corpus is thrown away: `-seed_inputs` for the seeds, no corpus directory) \
         and median executions; a trial that misses counts as infinite. An input that runs for {} s is a hang (libFuzzer's \
         `-timeout`, the naive generator's `--hang`); it counts, marked \"by a hang\", only if it is the bug's: run \
         again alone, it still hangs with the trial's settings or ends with a violation, and returns cleanly with every \
         switch off and every workaround on.\n\n",
        o.trials,
        modes.join(","),
        o.max_len,
        if o.pin { "" } else { " --any-target" },
        o.parallel,
        if o.pin {
            "Each bug's trials pin its target, as a campaign on the crate under test does (a user's own fuzz target \
             has only their adapter): a `kvm-arm-2012` switch pins `kvm-arm-2012`, a finding `target/workaround` pins \
             `target`, for libFuzzer and the naive generator alike (`--any-target` lets each input's first byte \
             choose, as the default campaign over the two native targets does)."
        } else {
            "The target is what each input's first byte chooses, as in the default campaign over the two native \
             targets (`--any-target`), for libFuzzer and the naive generator alike."
        },
        o.max_len,
        hang::TRIAL_SECONDS
    );
    if let (Some(keep), Some(rerun)) = (&o.keep, &o.rerun) {
        md += &format!(
            "The trials of {} come from a later run (`--rerun`: bugs new or changed since); the others are \
             those of an earlier run of the same settings (`--keep {keep}`).\n\n",
            rerun.split(',').map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", ")
        );
    }
    let pinned: Vec<String> =
        targets.iter().filter(|t| t.settings.aarch64_only()).map(|t| format!("`{}`", t.name)).collect();
    if !pinned.is_empty() {
        md += &format!(
            "{} belong to a target that builds for AArch64 only: their trials pin that target in either case (this \
             host's decoder cannot choose it) and run libFuzzer and the naive generator built for AArch64 Linux under \
             qemu-aarch64, which runs them about 20x slower than native (README, \"Under qemu-user\").\n\n",
            pinned.join(", ")
        );
    }
    let has = |m: &str| modes.contains(&m);
    if has("libfuzzer") && has("naive") {
        md += "## libFuzzer against naive\n\n";
        md += "| bug | naive | libFuzzer, empty | libFuzzer, seeds | time naive / empty | execs naive / empty | execs ≤ naive | time ≤ naive + 0.2 s | 10/10 |\n";
        md += "|---|---|---|---|---|---|---|---|---|\n";
        let mut naive_times: Vec<(f64, &str)> = Vec::new();
        for t in targets {
            let n = cell(results, &t.name, "naive", false);
            let e = cell(results, &t.name, "libfuzzer", false);
            let s = cell(results, &t.name, "libfuzzer", true);
            let (nm, em) = (median(&n), median(&e));
            naive_times.push((nm.map_or(f64::INFINITY, |m| m.0), &t.name));
            let ratio = |f: fn((f64, u64)) -> f64| match (nm, em) {
                (Some(n), Some(e)) => format!("{:.2}x", f(n) / f(e).max(1e-3)),
                (None, Some(_)) => "naive missed".into(),
                _ => "-".into(),
            };
            let yes = |b: bool| if b { "yes" } else { "**no**" };
            let execs_ok = match (nm, em) {
                (Some(n), Some(e)) => e.1 <= n.1,
                (None, Some(_)) => true,
                _ => false,
            };
            let time_ok = match (nm, em) {
                (Some(n), Some(e)) => e.0 <= n.0 + 0.2,
                (None, Some(_)) => true,
                _ => false,
            };
            let all = !e.is_empty() && e.iter().all(|r| r.found);
            md += &format!(
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                t.name,
                show(&n, cap),
                show(&e, cap),
                if s.is_empty() { "-".into() } else { show(&s, cap) },
                ratio(|m| m.0),
                ratio(|m| m.1 as f64),
                yes(execs_ok),
                yes(time_ok),
                yes(all)
            );
        }
        naive_times.sort_by(|a, b| b.0.total_cmp(&a.0));
        md +=
            "\nThe five bugs where naive's median time is longest, libFuzzer (empty corpus) against it:\n\n";
        for (nt, name) in naive_times.iter().take(5) {
            let e = median(&cell(results, name, "libfuzzer", false));
            let verdict = match e {
                Some(e) if nt.is_finite() => {
                    let r = nt / e.0.max(1e-3);
                    format!("{r:.1}x faster{}", if r >= 3.0 { "" } else { " (**under 3x**)" })
                }
                Some(e) => format!("libFuzzer found it ({:.2} s median)", e.0),
                None => "**libFuzzer missed it**".into(),
            };
            md += &format!(
                "- `{name}`: naive {}, {verdict}\n",
                if nt.is_finite() { format!("{nt:.2} s") } else { "missed".into() }
            );
        }
        md += "\n";
    }
    let extra: Vec<&str> = modes.iter().copied().filter(|m| *m != "naive").collect();
    if extra.len() > 1 || !has("naive") {
        md += "## Modes (ablation)\n\nMedian time to bug per mode, from an empty corpus (found/trials, median s, median executions).\n\n";
        md += &format!("| bug | {} |\n|---|{}\n", extra.join(" | "), "---|".repeat(extra.len()));
        for t in targets {
            let cells: Vec<String> =
                extra.iter().map(|m| show(&cell(results, &t.name, m, false), cap)).collect();
            md += &format!("| `{}` | {} |\n", t.name, cells.join(" | "));
        }
        md += "\n";
    }
    md += &format!(
        "![survival plot]({}-survival.svg)\n",
        Path::new(&o.out).file_name().map_or("ttb".into(), |f| f.to_string_lossy())
    );
    md
}

fn plot(targets: &[Target], results: &[Trial], cap: u64, out: &Path) -> Result {
    use plotters::prelude::*;
    let root = SVGBackend::new(out, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Fraction of trials that have not found the bug yet", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0.001f64..cap as f64).log_scale(), 0.0f64..1.05)?;
    chart.configure_mesh().x_desc("seconds (log scale)").y_desc("not found").draw()?;
    for (i, t) in targets.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        for (mode, dashed) in [("libfuzzer", false), ("naive", true)] {
            let v = cell(results, &t.name, mode, false);
            if v.is_empty() {
                continue;
            }
            let mut times: Vec<f64> = v.iter().filter(|r| r.found).map(|r| r.seconds.max(0.001)).collect();
            times.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            let mut pts = vec![(0.001, 1.0)];
            for (k, s) in times.iter().enumerate() {
                pts.push((*s, 1.0 - k as f64 / n));
                pts.push((*s, 1.0 - (k + 1) as f64 / n));
            }
            pts.push((cap as f64, 1.0 - times.len() as f64 / n));
            let style = ShapeStyle { color, filled: false, stroke_width: if dashed { 1 } else { 2 } };
            let label = format!("{} ({})", t.name, if dashed { "naive" } else { "libFuzzer" });
            if dashed {
                chart.draw_series(DashedLineSeries::new(pts, 4, 4, style))?.label(label).legend(
                    move |(x, y)| {
                        PathElement::new(
                            vec![(x, y), (x + 16, y)],
                            ShapeStyle { color, filled: false, stroke_width: 1 },
                        )
                    },
                );
            } else {
                chart.draw_series(LineSeries::new(pts, style))?.label(label).legend(move |(x, y)| {
                    PathElement::new(
                        vec![(x, y), (x + 16, y)],
                        ShapeStyle { color, filled: false, stroke_width: 2 },
                    )
                });
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(found: bool, seconds: f64, execs: u64) -> Trial {
        Trial {
            bug: "b".into(),
            mode: "naive".into(),
            seeds: false,
            trial: 0,
            found,
            hang: false,
            seconds,
            execs,
        }
    }

    #[test]
    fn medians_of_time_and_executions_are_taken_apart_and_misses_count_as_infinite() {
        // The fastest trial ran the most executions: the median of each is its own.
        let v = [trial(true, 0.01, 98), trial(true, 0.02, 5), trial(true, 0.03, 7)];
        assert_eq!(median(&v.iter().collect::<Vec<_>>()), Some((0.02, 7)));
        // Two misses of three: the median is a miss.
        let v = [trial(true, 0.01, 5), trial(false, 60.0, 10), trial(false, 60.0, 11)];
        assert_eq!(median(&v.iter().collect::<Vec<_>>()), None);
        // One miss of three: it sorts last in both.
        let v = [trial(false, 60.0, 1), trial(true, 0.5, 40), trial(true, 0.2, 90)];
        assert_eq!(median(&v.iter().collect::<Vec<_>>()), Some((0.5, 90)));
    }
}
