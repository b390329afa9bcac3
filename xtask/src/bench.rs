//! `cargo xtask bench`: every performance figure of the project, measured in one run on this
//! machine, with medians and ratios against baselines from the same run. Writes
//! `bench/results.md`, `bench/results.json` and `bench/cost.svg`.

use crate::fuzz::{self, Build, DEFAULT_MAX_LEN, LIBFUZZER_OPTIONS};
use crate::{run, setup, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What to run.
pub struct Options {
    /// Repetitions of each native measurement (the median is kept).
    pub runs: usize,
    /// Seconds of each of three fuzzing runs for execs/s.
    pub fuzz_seconds: u64,
    /// Seconds of the memory campaign.
    pub campaign_seconds: u64,
    /// The commit whose default campaign the ops/s figure is compared with.
    pub baseline: String,
    /// Seconds of each default-campaign run of that comparison.
    pub default_seconds: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `taskset -c 0` when available, so single-core figures use one core.
fn one_core(cmd: &str) -> Command {
    if setup::works("taskset", &["-c", "0", "true"]) {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", cmd]);
        c
    } else {
        Command::new(cmd)
    }
}

fn native(runs: usize) -> Result<Value> {
    let bin = fuzz::harness_bin("stagehand-bench")?;
    let out = one_core(&bin.display().to_string()).args(["--runs", &runs.to_string()]).output()?;
    if !out.status.success() {
        return Err(format!("stagehand-bench failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn criterion() -> Result<Value> {
    run(Command::new("cargo").args([
        "bench",
        "-p",
        "stagehand-cli",
        "--bench",
        "hot",
        "--",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "3",
    ]))?;
    let mut out = serde_json::Map::new();
    for name in [
        "mmu/set_pte+clear_pte",
        "mmu/set_pte_break_before_make",
        "walker/translate",
        "oracles/map+clear",
        "oracles/guest_read",
        "decode/256_bytes",
    ] {
        let path = format!("target/criterion/{}/new/estimates.json", name.replace('/', "_"));
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?)?;
        out.insert(name.into(), json!({"median_ns": v["median"]["point_estimate"]}));
    }
    Ok(Value::Object(out))
}

/// One libFuzzer run of `bin` on one core from `seeds`: its average execs/s.
fn libfuzzer_rate(bin: &Path, seeds: &Path, seconds: u64, env: &[(&str, &str)]) -> Result<f64> {
    let work = std::env::temp_dir().join(format!("stagehand-bench-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let out = one_core(&bin.display().to_string())
        .arg(&work)
        .arg(seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={DEFAULT_MAX_LEN}"))
        .args(LIBFUZZER_OPTIONS)
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", work.display()))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .output()?;
    let _ = std::fs::remove_dir_all(&work);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ERROR: libFuzzer") {
        return Err(format!("{} stopped on a finding during the rate measurement", bin.display()).into());
    }
    Ok(stderr
        .lines()
        .find_map(|l| l.strip_prefix("stat::average_exec_per_sec:").and_then(|v| v.trim().parse().ok()))
        .ok_or("no execs/s in libFuzzer's output")?)
}

/// A rate measurement: its name, the binary, and its environment.
type Variant<'a> = (&'static str, &'a Path, Vec<(&'static str, &'static str)>);

/// Execs/s of the `ops` target on one core at the campaigns' `-max_len`, three runs each, interleaved
/// so that every variant sees the same machine: the floor (a target that does nothing),
/// `cargo fuzz`'s build (every crate instrumented, byte mutation), the default build
/// (coverage on the code under test) with byte mutation (what campaigns run), and the same
/// build with the op-level mutator (`STAGEHAND_MUTATOR=ops`). The target is pinned to `kvm-arm-2012`, whose corrected
/// code finds nothing (`aarch64-paging`'s findings would stop libFuzzer).
fn fuzz_rate(seconds: u64) -> Result<Value> {
    let floor = fuzz::build_target("floor", Build::Plain)?;
    let all = fuzz::build_target("ops", Build::AllCrates)?;
    let ops = fuzz::build_target("ops", Build::Plain)?;
    let stagehand = fuzz::stagehand()?;
    let seeds = Path::new("target/fuzz/seeds-kvm");
    fuzz::seeds(&stagehand, seeds, &[], Some("kvm-arm-2012"))?;
    let pin = ("STAGEHAND_TARGET", "kvm-arm-2012");
    let variants: [Variant; 4] = [
        ("floor", &floor, vec![]),
        ("all_crates_bytes", &all, vec![pin]),
        ("covered_bytes", &ops, vec![pin]),
        ("covered_ops", &ops, vec![pin, ("STAGEHAND_MUTATOR", "ops")]),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..3 {
        for (i, (_, bin, env)) in variants.iter().enumerate() {
            rates[i].push(libfuzzer_rate(bin, seeds, seconds, env)?);
        }
    }
    let mut doc = serde_json::Map::new();
    for ((name, _, _), r) in variants.iter().zip(&rates) {
        doc.insert((*name).into(), json!({"execs_per_sec": median(r.clone()), "runs": r}));
    }
    doc.insert("seconds".into(), json!(seconds));
    doc.insert("max_len".into(), json!(DEFAULT_MAX_LEN));
    Ok(Value::Object(doc))
}

/// The `ops` target of `rev`'s tree with an ops counter (`stagehand-ops:` lines), built by
/// that tree's own `cargo xtask fuzz`: the baseline of the default-campaign comparison. The
/// counter is the measurement instrument; the target is otherwise that commit's.
const COUNTING_OPS_TARGET: &str = r#"#![no_main]
use harness::fuzz::{ops_target, FuzzSequence};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
static OPS: AtomicU64 = AtomicU64::new(0);
static EXECS: AtomicU64 = AtomicU64::new(0);
extern "C" fn report() {
    eprintln!("stagehand-ops: {} ops in {} execs", OPS.load(Relaxed), EXECS.load(Relaxed));
}
extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}
fuzz_target!(|seq: FuzzSequence| {
    if EXECS.fetch_add(1, Relaxed) == 0 {
        unsafe { atexit(report) };
    }
    OPS.fetch_add(seq.1.len() as u64, Relaxed);
    ops_target(seq.0, &seq.1)
});
fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    harness::mutate::mutate(data, size, max_size, seed, fuzzer_mutate)
});
"#;

/// Ops/s of a default campaign (every target, the known findings, from the corpus seeds,
/// one core) of `bin` in `dir`.
fn campaign_ops(dir: &Path, bin: &Path, seconds: u64, max_len: usize) -> Result<(f64, f64)> {
    let work = std::env::temp_dir().join(format!("stagehand-bench-default-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let out = one_core(&std::path::absolute(bin)?.display().to_string())
        .current_dir(dir)
        .arg(&work)
        .arg("target/fuzz/seeds")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={max_len}"))
        .args(LIBFUZZER_OPTIONS)
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", work.display()))
        .env("STAGEHAND_DEFECTS", "none")
        .env("STAGEHAND_KNOWN", "corpus/known-findings.txt")
        .stdout(Stdio::null())
        .output()?;
    let _ = std::fs::remove_dir_all(&work);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ops: f64 = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("stagehand-ops: ")?.split_whitespace().next()?.parse().ok())
        .next_back()
        .ok_or("no stagehand-ops line: the campaign stopped early")?;
    let execs: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0);
    Ok((ops / seconds as f64, execs / seconds as f64))
}

/// The default campaign's ops/s now and at `baseline`, interleaved (2 runs each), plus
/// now at other `-max_len` values.
fn default_campaign(baseline: &str, seconds: u64) -> Result<Value> {
    let tree = Path::new("target/bench-baseline");
    let _ = Command::new("git").args(["worktree", "remove", "--force"]).arg(tree).output();
    let _ = std::fs::remove_dir_all(tree);
    run(Command::new("git").args(["worktree", "add", "--force", "--detach"]).arg(tree).arg(baseline))?;
    std::fs::write(tree.join("fuzz/fuzz_targets/ops.rs"), COUNTING_OPS_TARGET)?;
    // That tree's own campaign command builds its target and seeds (one second of fuzzing).
    run(Command::new("cargo").current_dir(tree).args(["xtask", "fuzz", "--seconds", "1"]))?;
    let now = fuzz::build_target("ops", Build::Plain)?;
    run(Command::new(fuzz::stagehand()?).args(["seeds", "corpus", "-o", "target/fuzz/seeds"]))?;
    let old_bin = tree.join("target/fuzz-bin/ops");
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        old.push(campaign_ops(tree, &old_bin, seconds, 128)?);
        new.push(campaign_ops(Path::new("."), &now, seconds, DEFAULT_MAX_LEN)?);
    }
    let lens: Vec<Value> = [128usize, 2048]
        .iter()
        .map(|&l| {
            campaign_ops(Path::new("."), &now, seconds, l)
                .map(|(o, e)| json!({"max_len": l, "ops_per_sec": o, "execs_per_sec": e}))
        })
        .collect::<Result<_>>()?;
    let m = |v: &[(f64, f64)], k: usize| median(v.iter().map(|x| if k == 0 { x.0 } else { x.1 }).collect());
    Ok(json!({
        "baseline": baseline, "seconds": seconds,
        "baseline_ops_per_sec": m(&old, 0), "baseline_execs_per_sec": m(&old, 1),
        "ops_per_sec": m(&new, 0), "execs_per_sec": m(&new, 1), "max_len": DEFAULT_MAX_LEN,
        "other_lengths": lens,
    }))
}

fn qemu() -> Result<Value> {
    setup::apt(&[("qemu-system-arm", "qemu-system-arm"), ("qemu-system-arm", "qemu-system-aarch64")])?;
    let stagehand = fuzz::stagehand()?;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let out =
            Command::new(&stagehand).args(["qemu", "--json", "corpus"]).stderr(Stdio::null()).output()?;
        let command_wall = start.elapsed().as_secs_f64();
        let mut v: Value = serde_json::from_slice(&out.stdout)?;
        if v["agree"] != v["files"] {
            return Err(format!("`stagehand qemu corpus` did not agree on every file: {v}").into());
        }
        v["command_wall_seconds"] = json!(command_wall);
        runs.push(v);
    }
    let pick = |k: &str| median(runs.iter().filter_map(|r| r[k].as_f64()).collect());
    // Both images, measured in the same runs.
    let mut images = serde_json::Map::new();
    for name in ["ARMv7", "AArch64"] {
        let pick = |k: &str| median(runs.iter().filter_map(|r| r["images"][name][k].as_f64()).collect());
        images.insert(
            name.into(),
            json!({
                "files": runs[0]["images"][name]["files"],
                "boot_overhead_ms": pick("boot_overhead_ms"), "seqs_per_sec_booted": pick("seqs_per_sec_booted"),
            }),
        );
    }
    Ok(json!({
        "files": runs[0]["files"], "agree": runs[0]["agree"], "images": images,
        "wall_seconds": pick("wall_seconds"), "command_wall_seconds": pick("command_wall_seconds"),
    }))
}

/// Peak RSS of a libFuzzer campaign, sampled every second, and its growth after the
/// first minute.
fn memory(seconds: u64) -> Result<Value> {
    let bin = fuzz::build_target("ops", Build::Plain)?;
    let work = std::env::temp_dir().join(format!("stagehand-bench-mem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // Pinned to kvm-arm-2012 with its seeds, like the rate runs: its corrected code finds
    // nothing, so the campaign runs its whole time (a crash is an error, not a figure).
    let seeds = Path::new("target/fuzz/seeds-kvm");
    fuzz::seeds(&fuzz::stagehand()?, seeds, &[], Some("kvm-arm-2012"))?;
    let mut child = Command::new(&bin)
        .arg(&work)
        .arg(seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={DEFAULT_MAX_LEN}"))
        .arg(format!("-artifact_prefix={}/", work.display()))
        .args(LIBFUZZER_OPTIONS)
        .env("STAGEHAND_TARGET", "kvm-arm-2012")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let start = Instant::now();
    let mut samples: Vec<(f64, f64)> = Vec::new();
    while child.try_wait()?.is_none() {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        if let Some(kb) = status.lines().find_map(|l| {
            l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        }) {
            samples.push((start.elapsed().as_secs_f64(), kb / 1024.0));
        }
        if start.elapsed() > Duration::from_secs(seconds + 60) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let status = child.wait()?;
    let ran = start.elapsed().as_secs_f64();
    if !status.success() && ran < seconds as f64 {
        return Err(format!(
            "the memory campaign stopped after {ran:.0} s of {seconds} ({status}); its artifacts are in {}",
            work.display()
        )
        .into());
    }
    let _ = std::fs::remove_dir_all(&work);
    let peak = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    let minute = samples.iter().find(|s| s.0 >= 60.0f64.min(seconds as f64 / 2.0)).map_or(0.0, |s| s.1);
    let after_minute_peak =
        samples.iter().filter(|s| s.0 >= 60.0f64.min(seconds as f64 / 2.0)).map(|s| s.1).fold(0.0, f64::max);
    let last = samples.last().map_or(0.0, |s| s.1);
    Ok(json!({
        "seconds": seconds, "peak_rss_mb": peak, "rss_at_first_minute_mb": minute,
        "peak_after_first_minute_mb": after_minute_peak, "final_rss_mb": last,
        "growth_after_first_minute_mb": after_minute_peak - minute, "samples": samples.len(),
    }))
}

fn find<'a>(v: &'a Value, list: &str, key: &str, name: &str) -> &'a Value {
    v[list]
        .as_array()
        .and_then(|a| {
            a.iter().find(|x| {
                x[key].as_str() == Some(name)
                    || x[key].as_u64().map(|n| n.to_string()).as_deref() == Some(name)
            })
        })
        .unwrap_or(&Value::Null)
}

/// Runs everything and writes the results.
pub fn bench(o: &Options) -> Result {
    setup::base()?;
    setup::plot_font()?;
    let (cpu, cores) = setup::machine();
    eprintln!("bench: native measurements ({} runs each)", o.runs);
    let native = native(o.runs)?;
    eprintln!("bench: criterion");
    let criterion = criterion()?;
    eprintln!("bench: fuzz target execs/s (3 x {} s, one core)", o.fuzz_seconds);
    let fuzz = fuzz_rate(o.fuzz_seconds)?;
    eprintln!("bench: QEMU");
    let qemu = qemu()?;
    eprintln!("bench: memory of a {} s campaign", o.campaign_seconds);
    let memory = memory(o.campaign_seconds)?;
    eprintln!("bench: the default campaign against {} ({} s runs)", o.baseline, o.default_seconds);
    let campaign = default_campaign(&o.baseline, o.default_seconds)?;
    let doc = json!({
        "machine": {"cpu": cpu, "cores": cores},
        "native": native, "criterion": criterion, "fuzz": fuzz, "qemu": qemu, "memory": memory,
        "campaign": campaign,
    });
    std::fs::create_dir_all("bench")?;
    std::fs::write("bench/results.json", serde_json::to_string_pretty(&doc)? + "\n")?;
    write_report(&doc, o.runs)
}

/// Rewrites `bench/results.md` and `bench/cost.svg` from `bench/results.json`, measuring
/// nothing (`cargo xtask bench --render`, after a change to the report's form).
pub fn render() -> Result {
    setup::plot_font()?;
    let doc: Value = serde_json::from_str(&std::fs::read_to_string("bench/results.json")?)?;
    let runs = doc["native"]["runs"].as_u64().ok_or("bench/results.json: no native.runs")? as usize;
    write_report(&doc, runs)
}

fn write_report(doc: &Value, runs: usize) -> Result {
    let md = markdown(doc, runs);
    std::fs::write("bench/results.md", &md)?;
    plot(doc, Path::new("bench/cost.svg"))?;
    print!("{md}");
    eprintln!("wrote bench/results.md, bench/results.json, bench/cost.svg");
    Ok(())
}

fn markdown(d: &Value, runs: usize) -> String {
    let n = &d["native"];
    let r64 = find(n, "throughput", "workload", "random-64");
    let growth =
        |pages: &str| find(n, "growth", "mapped_pages", pages)["ns_per_op"].as_f64().unwrap_or(f64::NAN);
    let (g100, g100k) = (growth("100"), growth("100000"));
    let trace = |w: &str| find(n, "traces", "workload", w)["bytes_per_op"].as_f64().unwrap_or(f64::NAN);
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let ok = |b: bool| if b { "yes" } else { "**no**" };
    let mut md = format!(
        "# Benchmarks\n\nGenerated by `cargo xtask bench` on {} ({} cores). Native figures: single thread, pinned to one \
         core, median of {} runs; ratios are against baselines measured in the same run.\n\n",
        d["machine"]["cpu"].as_str().unwrap_or("?"),
        d["machine"]["cores"],
        runs
    );
    let oracles_64 = f(&r64["oracles"]["ops_per_sec"]);
    let overhead_64 = f(&r64["oracle_overhead"]);
    let paging = find(n, "throughput", "workload", "aarch64-paging-random-64");
    let paging_overhead = f(&paging["oracle_overhead"]);
    let c = &d["campaign"];
    let campaign_ratio = f(&c["ops_per_sec"]) / f(&c["baseline_ops_per_sec"]);
    let fuzz_label = format!(
        "`ops` fuzz target pinned to `kvm-arm-2012`, libFuzzer, one core, `-max_len={}`, no sanitizer (floor: a target that does nothing)",
        d["fuzz"]["max_len"].as_u64().unwrap_or(128)
    );
    let rows = [
        (
            "harness with all oracles, random 64-op sequences",
            format!("{:.2} M ops/s", oracles_64 / 1e6),
            "≥ 1 M ops/s",
            ok(oracles_64 >= 1e6),
        ),
        (
            "oracle overhead over bare `mmu`, same sequences",
            format!("{overhead_64:.2}x"),
            "≤ 3x",
            ok(overhead_64 <= 3.0),
        ),
        (
            "oracle overhead over the bare `aarch64-paging` crate, random 64-op sequences",
            format!("{paging_overhead:.2}x"),
            "≤ 4x",
            ok(paging_overhead <= 4.0),
        ),
        (
            "default campaign (every target, one core) ops/s, against the same campaign of the baseline commit",
            format!(
                "{:.0} ops/s ({:.0} execs/s, `-max_len={}`) vs {:.0} ops/s ({:.0} execs/s) at `{}`: {campaign_ratio:.2}x",
                f(&c["ops_per_sec"]),
                f(&c["execs_per_sec"]),
                c["max_len"],
                f(&c["baseline_ops_per_sec"]),
                f(&c["baseline_execs_per_sec"]),
                c["baseline"].as_str().unwrap_or("?")
            ),
            "≥ 10x",
            ok(campaign_ratio >= 10.0),
        ),
        (
            "time per op at 100k mapped pages vs at 100",
            format!("{:.2}x ({g100k:.0} vs {g100:.0} ns)", g100k / g100),
            "≤ 2x",
            ok(g100k / g100 <= 2.0),
        ),
        (
            fuzz_label.as_str(),
            format!(
                "{:.0} execs/s (floor {:.0}; every crate instrumented {:.0}; op-level mutator {:.0})",
                f(&d["fuzz"]["covered_bytes"]["execs_per_sec"]),
                f(&d["fuzz"]["floor"]["execs_per_sec"]),
                f(&d["fuzz"]["all_crates_bytes"]["execs_per_sec"]),
                f(&d["fuzz"]["covered_ops"]["execs_per_sec"])
            ),
            "≥ 100k execs/s",
            ok(f(&d["fuzz"]["covered_bytes"]["execs_per_sec"]) >= 100_000.0),
        ),
        (
            "binary trace, random 1024-op sequences",
            format!("{:.1} B/op", trace("random-1024")),
            "≤ 16 B/op",
            ok(trace("random-1024") <= 16.0),
        ),
        (
            "binary trace, random 64-op sequences",
            format!("{:.1} B/op", trace("random-64")),
            "≤ 16 B/op",
            ok(trace("random-64") <= 16.0),
        ),
        (
            "binary trace, the corpus (short files: the per-trace cost shows)",
            format!("{:.1} B/op", trace("corpus")),
            "≤ 16 B/op",
            ok(trace("corpus") <= 16.0),
        ),
        (
            "QEMU: the whole corpus, wall time of `stagehand qemu corpus`",
            format!("{:.2} s", f(&d["qemu"]["command_wall_seconds"])),
            "< 10 s",
            ok(f(&d["qemu"]["command_wall_seconds"]) < 10.0),
        ),
        (
            "QEMU ARMv7: sequences per second once booted (corpus)",
            format!("{:.0}", f(&d["qemu"]["images"]["ARMv7"]["seqs_per_sec_booted"])),
            "≥ 500",
            ok(f(&d["qemu"]["images"]["ARMv7"]["seqs_per_sec_booted"]) >= 500.0),
        ),
        (
            "QEMU AArch64: sequences per second once booted (corpus)",
            format!("{:.0}", f(&d["qemu"]["images"]["AArch64"]["seqs_per_sec_booted"])),
            "≥ 500",
            ok(f(&d["qemu"]["images"]["AArch64"]["seqs_per_sec_booted"]) >= 500.0),
        ),
        (
            "memory: RSS growth after the first minute of a campaign",
            format!(
                "{:+.1} MB (peak {:.0} MB over {} s)",
                f(&d["memory"]["growth_after_first_minute_mb"]),
                f(&d["memory"]["peak_rss_mb"]),
                d["memory"]["seconds"]
            ),
            "no growth",
            ok(f(&d["memory"]["growth_after_first_minute_mb"]) <= 4.0),
        ),
    ];
    md += "## Targets\n\n| figure | measured | target | met |\n|---|---|---|---|\n";
    for (what, got, target, met) in rows {
        md += &format!("| {what} | {got} | {target} | {met} |\n");
    }
    md += "\n## Native executor throughput\n\n`bare`: `mmu` on the smallest platform (flat memory, refcounts, lazy zeroing), no oracle, no event; \
           `oracles`: the executor with every oracle; `recording`: plus events and the binary trace (deflate).\n\n";
    md += "| workload | sequences | ops | bare ns/op | oracles ns/op | recording ns/op | oracles ops/s | oracles seq/s | oracle overhead |\n|---|---|---|---|---|---|---|---|---|\n";
    for t in n["throughput"].as_array().into_iter().flatten() {
        md += &format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}x |\n",
            t["workload"].as_str().unwrap_or("?"),
            t["sequences"],
            t["ops"],
            f(&t["bare"]["ns_per_op"]),
            f(&t["oracles"]["ns_per_op"]),
            f(&t["recording"]["ns_per_op"]),
            f(&t["oracles"]["ops_per_sec"]),
            f(&t["oracles"]["seqs_per_sec"]),
            f(&t["oracle_overhead"])
        );
    }
    md += "\n## Cost growth\n\nTime per op of a fixed mix (map a far page, read it, read a mapped page, clear) with N pages already mapped; \
           only the mix is timed. Checks are incremental: touched entries after each op, full comparison only at the end.\n\n| mapped pages | ns/op |\n|---|---|\n";
    for g in n["growth"].as_array().into_iter().flatten() {
        md += &format!("| {} | {:.0} |\n", g["mapped_pages"], f(&g["ns_per_op"]));
    }
    md += "\n![time per op](cost.svg)\n\n## Traces\n\n| workload | traces | ops | bytes | B/op | record ops/s | replay ops/s |\n|---|---|---|---|---|---|---|\n";
    for t in n["traces"].as_array().into_iter().flatten() {
        md += &format!(
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.0} |\n",
            t["workload"].as_str().unwrap_or("?"),
            t["traces"],
            t["ops"],
            t["bytes"],
            f(&t["bytes_per_op"]),
            f(&t["record_ops_per_sec"]),
            f(&t["replay_ops_per_sec"])
        );
    }
    md += "\n## Hot paths (criterion medians)\n\n| bench | ns |\n|---|---|\n";
    if let Some(m) = d["criterion"].as_object() {
        for (k, v) in m {
            md += &format!("| `{k}` | {:.1} |\n", f(&v["median_ns"]));
        }
    }
    md += &format!(
        "\n## Fuzzing and QEMU\n\n- `ops` target: median {:.0} execs/s over 3 runs of {} s from the corpus seeds (`-max_len={} -len_control=0`, no sanitizer, one core, byte mutation).\n\
         - QEMU (`stagehand qemu corpus`, {} files, {} agree): ARMv7 image ({} files) boot overhead {:.0} ms, {:.0} sequences/s once booted; AArch64 image ({} files) boot overhead {:.0} ms, {:.0} sequences/s once booted; {:.2} s of QEMU time, {:.2} s for the whole command.\n\
         - Memory: a {} s campaign peaked at {:.0} MB RSS; {:.0} MB at the first minute, {:.0} MB at most afterwards, {:.0} MB at the end.\n",
        f(&d["fuzz"]["covered_bytes"]["execs_per_sec"]),
        d["fuzz"]["seconds"],
        d["fuzz"]["max_len"],
        d["qemu"]["files"],
        d["qemu"]["agree"],
        d["qemu"]["images"]["ARMv7"]["files"],
        f(&d["qemu"]["images"]["ARMv7"]["boot_overhead_ms"]),
        f(&d["qemu"]["images"]["ARMv7"]["seqs_per_sec_booted"]),
        d["qemu"]["images"]["AArch64"]["files"],
        f(&d["qemu"]["images"]["AArch64"]["boot_overhead_ms"]),
        f(&d["qemu"]["images"]["AArch64"]["seqs_per_sec_booted"]),
        f(&d["qemu"]["wall_seconds"]),
        f(&d["qemu"]["command_wall_seconds"]),
        d["memory"]["seconds"],
        f(&d["memory"]["peak_rss_mb"]),
        f(&d["memory"]["rss_at_first_minute_mb"]),
        f(&d["memory"]["peak_after_first_minute_mb"]),
        f(&d["memory"]["final_rss_mb"]),
    );
    md
}

fn plot(d: &Value, out: &Path) -> Result {
    use plotters::prelude::*;
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let by_len: Vec<(f64, f64)> = d["native"]["throughput"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let len: f64 = t["workload"].as_str()?.strip_prefix("random-")?.parse().ok()?;
            Some((len, f(&t["oracles"]["ns_per_op"])))
        })
        .collect();
    let by_pages: Vec<(f64, f64)> = d["native"]["growth"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| (f(&g["mapped_pages"]), f(&g["ns_per_op"])))
        .collect();
    let ymax = by_len.iter().chain(&by_pages).map(|p| p.1).fold(0.0, f64::max) * 1.5;
    let ymin = by_len.iter().chain(&by_pages).map(|p| p.1).fold(f64::INFINITY, f64::min) / 1.5;
    let root = SVGBackend::new(out, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Time per op with every oracle on (lower is better; flat is the goal)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..200_000f64).log_scale(), (ymin.min(100.0)..ymax.max(200.0)).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("sequence length (ops) / pages mapped (log)")
        .y_desc("ns per op (log)")
        .draw()?;
    for (pts, color, label) in [
        (by_len, BLUE, "vs sequence length (random sequences)"),
        (by_pages, RED, "vs pages already mapped (fixed mix)"),
    ] {
        chart
            .draw_series(LineSeries::new(
                pts.clone(),
                ShapeStyle { color: color.to_rgba(), filled: false, stroke_width: 2 },
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .draw()?;
    root.present()?;
    Ok(())
}
