//! `cargo xtask ttb`: time to bug for every defect switch, under the default campaign
//! configuration: only the switch is on; target, walker, BBM mode and VMID width are what
//! each input's first byte chooses, and the known findings are not crashes, as in `cargo
//! xtask demo`. For each switch, K trials of the libFuzzer `ops` target with its byte
//! mutation (what campaigns run), K with the op-level mutator (`STAGEHAND_MUTATOR=ops`), both from the corpus seeds without the
//! switch's own trigger, and K of the naive generator (uniform random ops, no feedback), all
//! in one run. A trial counts a violation of the trigger's kind on the trigger's target.
//! Writes `bench/ttb.md`, `bench/ttb.json` and a survival plot.

use crate::fuzz::{self, Build, Settings, DEFAULT_MAX_LEN, LIBFUZZER_OPTIONS};
use crate::{setup, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a trial searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// libFuzzer with its byte mutation (what campaigns run).
    FuzzBytes,
    /// libFuzzer with the op-level mutator (`STAGEHAND_MUTATOR=ops`).
    FuzzOps,
    Naive,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::FuzzBytes, Mode::FuzzOps, Mode::Naive];
    fn name(self) -> &'static str {
        match self {
            Mode::FuzzOps => "libfuzzer-ops",
            Mode::FuzzBytes => "libfuzzer-bytes",
            Mode::Naive => "naive",
        }
    }
}

/// One defect's trial settings, from its trigger file's header.
#[derive(Clone, Debug)]
pub struct Target {
    pub defect: String,
    pub settings: Settings,
    pub kind: String,
}

/// Reads `corpus/defects/<defect>.s2`'s header.
fn target(defect: &str) -> Result<Target> {
    let path = format!("corpus/defects/{defect}.s2");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let header = |key: &str| text.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()));
    // Any kind the trigger shows is the defect found (the code runs clean without it).
    let sites = header("expect ").ok_or_else(|| format!("{path}: no `expect` line"))?;
    let mut kinds: Vec<&str> = sites.split_whitespace().filter_map(|s| s.split('@').next()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let kind = kinds.join(",");
    let on = header("target ").unwrap_or_else(|| "kvm-arm-2012".into());
    let settings = Settings {
        defects: header("defects ").unwrap_or_else(|| defect.to_owned()),
        expect: Some(format!("{on}:{kind}")),
        known: Some(fuzz::KNOWN_FINDINGS.into()),
        ..Settings::default()
    };
    Ok(Target { defect: defect.to_owned(), settings, kind })
}

/// One trial's result.
#[derive(Clone, Debug)]
pub struct Trial {
    pub defect: String,
    pub mode: Mode,
    pub trial: usize,
    pub found: bool,
    pub seconds: f64,
    pub execs: u64,
}

fn fuzz_trial(
    bin: &Path,
    t: &Target,
    mode: Mode,
    trial: usize,
    cap: u64,
    seeds: Option<&Path>,
) -> Result<Trial> {
    let dir = std::env::temp_dir().join(format!(
        "stagehand-ttb-{}-{}-{}-{trial}",
        std::process::id(),
        t.defect,
        mode.name()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (corpus, artifacts) = (dir.join("corpus"), dir.join("artifacts"));
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    if let Some(seeds) = seeds {
        for e in std::fs::read_dir(seeds)? {
            let p = e?.path();
            std::fs::copy(&p, corpus.join(p.file_name().ok_or("seed name")?))?;
        }
    }
    let start = Instant::now();
    let out = Command::new(bin)
        .arg(&corpus)
        .arg(format!("-max_total_time={cap}"))
        .arg(format!("-seed={}", trial + 1))
        .arg(format!("-max_len={DEFAULT_MAX_LEN}"))
        .args(LIBFUZZER_OPTIONS)
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .envs(t.settings.env())
        .envs((mode == Mode::FuzzOps).then_some(("STAGEHAND_MUTATOR", "ops")))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let seconds = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let execs = stderr
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0);
    let found = std::fs::read_dir(&artifacts)?
        .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("crash-")));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Trial { defect: t.defect.clone(), mode, trial, found, seconds, execs })
}

fn naive_trial(stagehand: &Path, t: &Target, trial: usize, cap: u64) -> Result<Trial> {
    // Timed from spawn to exit, like the libFuzzer trials.
    let start = Instant::now();
    let out = Command::new(stagehand)
        .args(["naive", "--seconds", &cap.to_string(), "--seed", &(trial + 1).to_string()])
        .envs(t.settings.env())
        .stderr(Stdio::null())
        .output()?;
    let seconds = start.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(Trial {
        defect: t.defect.clone(),
        mode: Mode::Naive,
        trial,
        found: v["found"].as_bool().unwrap_or(false),
        seconds,
        execs: v["execs"].as_u64().unwrap_or(0),
    })
}

/// Median with censoring: trials that did not find the bug count as +infinity.
fn median(trials: &[&Trial]) -> Option<(f64, u64)> {
    let mut v: Vec<(f64, u64)> = trials
        .iter()
        .map(|t| if t.found { (t.seconds, t.execs) } else { (f64::INFINITY, t.execs) })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let m = v.get(v.len() / 2)?;
    m.0.is_finite().then_some(*m)
}

/// Runs the benchmark.
pub fn ttb(trials: usize, cap: u64, parallel: usize, only: Option<&str>, from_seeds: bool) -> Result {
    setup::plot_font()?;
    let defects: Vec<String> = match only {
        Some(list) => list.split(',').map(str::to_owned).collect(),
        None => {
            let mut v: Vec<String> = std::fs::read_dir("corpus/defects")?
                .filter_map(|e| e.ok()?.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect();
            v.sort();
            v
        }
    };
    let targets: Vec<Target> = defects.iter().map(|d| target(d)).collect::<Result<_>>()?;
    let bin = fuzz::build_target("ops", Build::Plain)?;
    let stagehand = fuzz::stagehand()?;
    let mut jobs = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let seeds = PathBuf::from(format!("target/fuzz/ttb-seeds/{}", t.defect));
        fuzz::seeds(&stagehand, &seeds, &[PathBuf::from(format!("defects/{}.s2", t.defect))], None)?;
        for trial in 0..trials {
            for mode in Mode::ALL {
                jobs.push((i, mode, trial, seeds.clone()));
            }
        }
    }
    let total = jobs.len();
    eprintln!(
        "time to bug: {} defect(s) x {trials} trial(s) x 3 modes, cap {cap} s, {parallel} at a time",
        targets.len()
    );
    let queue = Arc::new(Mutex::new(jobs.into_iter()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            let (queue, results, targets, bin, stagehand) = (&queue, &results, &targets, &bin, &stagehand);
            // The guard is dropped inside the closure, not held for the loop body.
            let next = move || queue.lock().ok().and_then(|mut q| q.next());
            scope.spawn(move || {
                while let Some((i, mode, trial, seeds)) = next() {
                    let t = &targets[i];
                    let r = match mode {
                        Mode::Naive => naive_trial(stagehand, t, trial, cap),
                        _ => fuzz_trial(bin, t, mode, trial, cap, from_seeds.then_some(seeds.as_path())),
                    };
                    let mut done = results.lock().expect("not poisoned");
                    match r {
                        Ok(r) => {
                            eprintln!(
                                "[{:>4}/{total} {:>5.0}s] {:<20} {:<16} #{trial}: {}",
                                done.len() + 1,
                                started.elapsed().as_secs_f64(),
                                t.defect,
                                mode.name(),
                                if r.found {
                                    format!("found in {:.2} s, {} execs", r.seconds, r.execs)
                                } else {
                                    format!("not found in {cap} s")
                                }
                            );
                            done.push(r);
                        }
                        Err(e) => eprintln!("{} {} #{trial}: trial failed: {e}", t.defect, mode.name()),
                    }
                }
            });
        }
    });
    let results = Arc::try_unwrap(results)
        .map_err(|_| "workers still running")?
        .into_inner()
        .map_err(|_| "poisoned")?;
    std::fs::create_dir_all("bench")?;
    write_json(&targets, &results, trials, cap)?;
    let md = markdown(&targets, &results, trials, cap, from_seeds);
    std::fs::write("bench/ttb.md", &md)?;
    plot(&targets, &results, cap, Path::new("bench/ttb-survival.svg"))?;
    print!("{md}");
    eprintln!("wrote bench/ttb.md, bench/ttb.json, bench/ttb-survival.svg");
    Ok(())
}

fn write_json(targets: &[Target], results: &[Trial], trials: usize, cap: u64) -> Result {
    let (cpu, cores) = setup::machine();
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|r| serde_json::json!({"defect": r.defect, "mode": r.mode.name(), "trial": r.trial, "found": r.found, "seconds": r.seconds, "execs": r.execs}))
        .collect();
    let kinds: serde_json::Map<String, serde_json::Value> = targets
        .iter()
        .map(|t| (t.defect.clone(), serde_json::json!({"expect": t.kind, "config": t.settings.describe()})))
        .collect();
    let doc = serde_json::json!({
        "machine": {"cpu": cpu, "cores": cores},
        "trials_per_mode": trials, "cap_seconds": cap, "max_len": DEFAULT_MAX_LEN,
        "defects": kinds, "trials": rows,
    });
    std::fs::write("bench/ttb.json", serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(())
}

fn markdown(targets: &[Target], results: &[Trial], trials: usize, cap: u64, from_seeds: bool) -> String {
    let (cpu, cores) = setup::machine();
    let from = if from_seeds {
        "from the corpus seeds without the switch's own trigger (`--from seeds`)"
    } else {
        "from an empty corpus"
    };
    let mut md = String::from("# Time to bug\n\n");
    md += &format!(
        "Generated by `cargo xtask ttb --trials {trials} --cap {cap}{}` on {cpu} ({cores} cores); every trial on one core. \
         Every switch runs under the default campaign configuration: only the switch is on, and target, walker, \
         BBM mode and VMID width are what each input's first byte chooses (the naive generator draws that byte \
         at random); the known findings (`corpus/known-findings.txt`) are not crashes. A trial counts only a \
         violation of the trigger file's kind on the trigger's target. libFuzzer (`ops`, no sanitizer, coverage \
         on the code under test, `-max_len={DEFAULT_MAX_LEN} -len_control=0`) starts {from}, with its byte \
         mutation (what campaigns run) or with the op-level mutator; the naive baseline draws \
         uniform random ops (1 to 64) through the same decoder, with no feedback. Times are medians over the \
         trials (a trial that misses counts as infinite), wall clock from process start to exit, so start-up and \
         corpus loading are in every libFuzzer figure. The ratios divide the naive medians by the libFuzzer \
         (byte mutation) medians, of time and of executions: above 1, libFuzzer is better.\n\n",
        if from_seeds { " --from seeds" } else { "" }
    );
    md += "| switch | expected violation | libFuzzer, byte mutation | libFuzzer, op mutator | naive | naive / libFuzzer: time | executions |\n";
    md += "|---|---|---|---|---|---|---|\n";
    for t in targets {
        let cell = |mode: Mode| {
            let v: Vec<&Trial> = results.iter().filter(|r| r.defect == t.defect && r.mode == mode).collect();
            let found = v.iter().filter(|r| r.found).count();
            let med = match median(&v) {
                Some((s, e)) => format!("{s:.2} s, {e} execs"),
                None => format!("> {cap} s"),
            };
            (format!("{found}/{} found, median {med}", v.len()), median(&v))
        };
        let (bytes, e) = cell(Mode::FuzzBytes);
        let (ops, _) = cell(Mode::FuzzOps);
        let (naive, n) = cell(Mode::Naive);
        let (ratio, execs) = match (e, n) {
            (Some(e), Some(n)) => {
                (format!("{:.2}x", n.0 / e.0.max(1e-3)), format!("{:.1}x", n.1 as f64 / e.1.max(1) as f64))
            }
            (Some(e), None) => (format!("> {:.0}x", cap as f64 / e.0.max(1e-3)), "-".into()),
            (None, Some(n)) => (format!("< {:.2}x", n.0 / cap as f64), "-".into()),
            _ => ("-".into(), "-".into()),
        };
        md += &format!("| `{}` | `{}` | {bytes} | {ops} | {naive} | {ratio} | {execs} |\n", t.defect, t.kind);
    }
    md += "\n![survival plot](ttb-survival.svg)\n";
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
        for (mode, dashed) in [(Mode::FuzzBytes, false), (Mode::Naive, true)] {
            let v: Vec<&Trial> = results.iter().filter(|r| r.defect == t.defect && r.mode == mode).collect();
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
            let label = format!("{} ({})", t.defect, if dashed { "naive" } else { "libFuzzer" });
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
