//! `cargo xtask example`: `examples/out-of-tree` built and run exactly as its user would, from
//! its own directory with its own commands, and each outcome checked:
//!
//! 1. fmt, clippy and `cargo test` (the corpus with its snapshots, `CI=true`);
//! 2. its program runs its corpus clean; with the `bug` feature exactly the files that unmap a
//!    whole live block and then run the guest fail, each with the missing invalidation;
//! 3. the corpus on QEMU (its own image crate, `stagehand-tiny-s2 qemu --image image`) agrees
//!    with the native runs;
//! 4. a campaign (`cargo fuzz run`) of `seconds` finds the bug with the feature on; the
//!    findings, triaged, run clean without it; the same campaign without the feature finds
//!    nothing.

use crate::setup;
use crate::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

const DIR: &str = "examples/out-of-tree";
/// The corpus files that unmap a whole live block and then run the guest.
const WHOLE_BLOCK_FILES: &[&str] = &["unmap_across_a_block_and_pages.s2", "unmap_whole_block_then_read.s2"];

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(DIR).args(args);
    c
}

fn ok(cmd: &mut Command) -> Result {
    crate::run(cmd)
}

/// The example's program with `--json`: its stdout parsed.
fn json(features: &[&str], args: &[&str]) -> Result<serde_json::Value> {
    let mut c = cargo(&["run", "--release", "-q"]);
    c.args(features).args(["--", "--json"]).args(args);
    let out = c.output()?;
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!("stagehand-tiny-s2 {args:?}: no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)).into()
    })
}

/// The failing files of a `run --json` report, each with its violation kinds.
fn failing(report: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    let files = report["files"].as_array().cloned().unwrap_or_default();
    files
        .iter()
        .filter(|f| f["ok"] != true)
        .map(|f| {
            let name = Path::new(f["file"].as_str().unwrap_or(""))
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            let kinds = f["violations"].as_array().into_iter().flatten();
            (name.unwrap_or_default(), kinds.filter_map(|v| v["kind"].as_str().map(String::from)).collect())
        })
        .collect()
}

/// One campaign of the example's `ops` target; returns its crash artifacts.
fn campaign(bug: bool, seconds: u64, work: &Path) -> Result<Vec<PathBuf>> {
    let corpus = work.join(if bug { "corpus-bug" } else { "corpus" });
    let artifacts = work.join(if bug { "artifacts-bug" } else { "artifacts" });
    for d in [&corpus, &artifacts] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d)?;
    }
    // The build Stagehand's own campaigns use: without comparison tracing, which instruments
    // the harness and its oracles too and costs 3x in executions per second.
    let mut c = cargo(&["+stable", "fuzz", "run", "-O", "-s", "none", "--no-trace-compares"]);
    if bug {
        c.args(["--features", "bug"]);
    }
    // The options the README recommends (inputs up to 512 bytes from the start), and a fixed
    // seed so that CI runs the same campaign every time.
    c.arg("ops").arg(std::fs::canonicalize(&corpus)?).arg("--").arg(format!("-max_total_time={seconds}"));
    c.args(["-max_len=512", "-len_control=0", "-seed=1"]);
    c.arg(format!("-artifact_prefix={}/", std::fs::canonicalize(&artifacts)?.display()));
    // A finding ends the run with a failure status; what counts is whether an artifact came.
    let status = c.status()?;
    let mut found: Vec<PathBuf> =
        std::fs::read_dir(&artifacts)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    found.sort();
    if !status.success() && found.is_empty() {
        return Err(format!("the example's campaign failed without an artifact: {status}").into());
    }
    Ok(found)
}

/// `cargo xtask example [--seconds 120]`: the campaign with the bug may run `seconds` (it
/// stops at its first finding), the one without it runs `seconds` but at most 30.
pub fn run(seconds: u64) -> Result {
    setup::cargo_tool("cargo-fuzz", "fuzz")?;
    ok(&mut cargo(&["fmt", "--all", "--", "--check"]))?;
    ok(&mut cargo(&["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    ok(cargo(&["test"]).env("CI", "true"))?;

    let clean = json(&[], &["run", "stagehand/corpus"])?;
    if clean["ok"] != true {
        return Err(
            format!("example: the corpus fails on tiny-s2 without its bug: {:?}", failing(&clean)).into()
        );
    }
    let buggy = failing(&json(&["--features", "bug"], &["run", "stagehand/corpus"])?);
    let names: Vec<&str> = buggy.iter().map(|(f, _)| f.as_str()).collect();
    if names != WHOLE_BLOCK_FILES || buggy.iter().any(|(_, k)| !k.iter().any(|k| k == "missing-tlbi")) {
        return Err(format!(
            "example: with the bug, expected {WHOLE_BLOCK_FILES:?} to fail with missing-tlbi; got {buggy:?}"
        )
        .into());
    }
    println!("example: the corpus runs clean; with the bug, {names:?} fail with missing-tlbi");

    crate::setup::apt(&[("qemu-system-arm", "qemu-system-aarch64")])?;
    ok(&mut cargo(&["run", "--release", "-q", "--", "qemu", "--image", "image", "stagehand/corpus"]))?;

    let work = Path::new(DIR).join("target/xtask-example");
    let found = campaign(true, seconds, &work)?;
    if found.is_empty() {
        return Err(format!("example: a {seconds} s campaign did not find tiny-s2's deliberate bug").into());
    }
    let triaged = work.join("triaged");
    let _ = std::fs::remove_dir_all(&triaged);
    let mut t = cargo(&["run", "--release", "-q", "--features", "bug", "--", "triage"]);
    t.args(found.iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    t.arg("--out").arg(std::fs::canonicalize(&work)?.join("triaged"));
    t.arg("--snapshots").arg(std::fs::canonicalize(&work)?.join("triaged-snapshots"));
    ok(&mut t)?;
    let files: Vec<String> = std::fs::read_dir(&triaged)?
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".s2"))
        .collect();
    let mut args = vec!["run", "--ignore-expect"];
    args.extend(files.iter().map(|f| f.strip_prefix(&format!("{DIR}/")).unwrap_or(f)));
    let without = json(&[], &args)?;
    if files.is_empty() || without["ok"] != true {
        return Err(format!(
            "example: the campaign's findings ({}) are not the deliberate bug: they fail without it too: {:?}",
            files.len(),
            failing(&without)
        )
        .into());
    }
    println!(
        "example: a campaign of at most {seconds} s found the deliberate bug ({} finding(s), clean without the bug)",
        files.len()
    );
    let clean_seconds = seconds.min(30);
    let found = campaign(false, clean_seconds, &work)?;
    if !found.is_empty() {
        return Err(format!(
            "example: a {clean_seconds} s campaign found {} artifact(s) in tiny-s2 without its bug",
            found.len()
        )
        .into());
    }
    println!("example: a {clean_seconds} s campaign without the bug found nothing");
    Ok(())
}
