//! AFL++ campaigns (afl.rs, no LLVM plugins): the same `ops` entry function, configuration,
//! triage and summary as the libFuzzer campaigns of [`crate::fuzz`], with what only AFL++'s
//! build shows (overflow checks, debug assertions) named by running it there.

use crate::fuzz::{seeds, stagehand, triage, Dirs, Settings};
use crate::{hang, run, setup, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An AFL++ campaign (afl.rs, no LLVM plugins): a main instance (`-M main`) plus `jobs - 1`
/// secondaries (`-S`) sharing the sync directory `dirs.work`, for `seconds`; then triage of
/// every crash. Returns the number of crashes.
pub fn campaign(s: &Settings, seconds: u64, jobs: usize, dirs: &Dirs) -> Result<usize> {
    setup::cargo_tool("cargo-afl", "afl")?;
    run(Command::new("cargo").current_dir("fuzz/afl").args(["afl", "build", "--release", "--bin", "ops"]))?;
    let stagehand = stagehand()?;
    let seeds_dir = PathBuf::from("target/fuzz/afl-seeds");
    seeds(&stagehand, &seeds_dir, &[], s.target.as_deref())?;
    let _ = std::fs::remove_dir_all(&dirs.work);
    let spawn = |name: &str, role: &str| -> Result<std::process::Child> {
        let mut cmd = Command::new("cargo");
        cmd.args(["afl", "fuzz", "-i"]).arg(&seeds_dir).arg("-o").arg(&dirs.work);
        cmd.args([role, name, "-V", &seconds.to_string(), "fuzz/afl/target/release/ops"]);
        cmd.envs(s.env()).env("AFL_SKIP_CPUFREQ", "1").env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1");
        cmd.env("AFL_NO_UI", "1").env("AFL_FAST_CAL", "1").stdout(Stdio::null());
        // A hang means what it means under libFuzzer: an input that runs for the campaign's
        // hang time. (AFL++'s own is 1 s; an input slower than its calibrated timeout is
        // only dropped, as before.)
        cmd.env("AFL_HANG_TMOUT", (hang::CAMPAIGN_SECONDS * 1000).to_string());
        eprintln!("+ {}", crate::render(&cmd));
        Ok(cmd.spawn()?)
    };
    let mut children = vec![spawn("main", "-M")?];
    for i in 1..jobs.max(1) {
        children.push(spawn(&format!("secondary{i}"), "-S")?);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds + 120);
    for mut child in children {
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                eprintln!("afl-fuzz did not stop two minutes after its deadline: killing it");
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = child.wait();
    }
    let (mut crashes, mut hangs) = (Vec::new(), Vec::new());
    let (mut execs, mut rate, mut corpus, mut edges, mut map) = (0u64, 0.0f64, 0u64, 0u64, 0u64);
    for entry in std::fs::read_dir(&dirs.work)? {
        let inst = entry?.path();
        let stats = std::fs::read_to_string(inst.join("fuzzer_stats")).unwrap_or_default();
        let field = |k: &str| {
            stats.lines().find_map(|l| {
                l.split_once(':').filter(|(n, _)| n.trim() == k).map(|(_, v)| v.trim().to_owned())
            })
        };
        execs += field("execs_done").and_then(|v| v.parse().ok()).unwrap_or(0);
        rate += field("execs_per_sec").and_then(|v| v.parse().ok()).unwrap_or(0.0);
        corpus = corpus.max(field("corpus_count").and_then(|v| v.parse().ok()).unwrap_or(0));
        edges = edges.max(field("edges_found").and_then(|v| v.parse().ok()).unwrap_or(0));
        map = map.max(field("total_edges").and_then(|v| v.parse().ok()).unwrap_or(0));
        crashes.extend(afl_inputs(&inst.join("crashes")));
        hangs.extend(afl_inputs(&inst.join("hangs")));
    }
    println!(
        "afl campaign ({}): {execs} execs ({rate:.0}/s), corpus {corpus}, {edges} of {map} map entries \
         (the code's edges and the state features), {} crash(es)",
        s.describe(),
        crashes.len()
    );
    hang::list(&stagehand, s, &hangs);
    let triaged = triage(&stagehand, s, &crashes, &dirs.regressions, &dirs.snapshots)?;
    for t in triaged.iter().filter(|t| t.status == "new" || t.status == "shorter") {
        println!(
            "  {} {} -> {}",
            t.status,
            t.site.as_deref().unwrap_or("-"),
            t.file.as_deref().unwrap_or("-")
        );
    }
    // Triage runs the release build; `cargo afl build` turns on overflow checks and debug
    // assertions, so a crash may show only in the AFL++ build: run it there to name it.
    let mut only_afl: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for t in triaged.iter().filter(|t| t.status == "clean") {
        let Some(artifact) = t.artifact.as_deref() else { continue };
        only_afl.entry(afl_panic(s, Path::new(artifact))).or_default().push(artifact);
    }
    if !only_afl.is_empty() {
        println!(
            "  clean in the release build, crashing in the AFL++ build (overflow checks, debug assertions):"
        );
        for (message, artifacts) in &only_afl {
            println!("    {} artifact(s): {message} (e.g. {})", artifacts.len(), artifacts[0]);
        }
    }
    Ok(crashes.len())
}

/// What the AFL++ build of the `ops` target says when it runs `artifact`: its panic
/// message, without the harness's prefix.
fn afl_panic(s: &Settings, artifact: &Path) -> String {
    let out = std::fs::File::open(artifact).and_then(|input| {
        Command::new("fuzz/afl/target/release/ops")
            .envs(s.env())
            .env("RUST_BACKTRACE", "0")
            .stdin(input)
            .stdout(Stdio::null())
            .output()
    });
    let Ok(out) = out else { return "could not be run again".into() };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines = stderr.lines().skip_while(|l| !l.contains("panicked at"));
    match (lines.next(), lines.next()) {
        (Some(_), Some(message)) => {
            let m = message.trim();
            // `stagehand violation at op #N: what`: grouped by what.
            m.strip_prefix("stagehand violation at op #")
                .and_then(|rest| rest.split_once(": "))
                .map_or(m, |(_, what)| what)
                .to_string()
        }
        _ if out.status.success() => "does not crash when run again".into(),
        _ => format!("exits with {}", out.status),
    }
}

/// The inputs AFL++ saved in `dir` (`id:...` files), in name order.
fn afl_inputs(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("id:")))
        .collect();
    found.sort();
    found
}

/// The CI smoke of the AFL++ path: a short campaign with `clear-nonpresent` must crash.
pub fn smoke(seconds: u64) -> Result {
    let tmp = std::env::temp_dir().join(format!("stagehand-afl-smoke-{}", std::process::id()));
    let dirs = Dirs {
        work: "target/fuzz/afl-smoke".into(),
        regressions: tmp.join("regressions"),
        snapshots: tmp.join("snapshots"),
    };
    let s = Settings {
        defects: "clear-nonpresent".into(),
        target: Some("kvm-arm-2012".into()),
        ..Settings::default()
    };
    let crashes = campaign(&s, seconds, 1, &dirs)?;
    let _ = std::fs::remove_dir_all(&tmp);
    if crashes == 0 {
        return Err("afl smoke: clear-nonpresent was not found".into());
    }
    Ok(())
}
