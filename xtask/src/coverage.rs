//! `cargo xtask coverage`: which lines of the code under test (`mmu`, each target adapter,
//! and the third-party crate they drive) the corpus and a fuzzing campaign reach. Runs a
//! campaign, replays its corpus and the corpus seeds with `cargo fuzz coverage`, and
//! writes `target/coverage/html/index.html` and `target/coverage/summary.txt` with
//! `llvm-cov` from rustup's `llvm-tools-preview`.

use crate::fuzz::{self, Dirs, Settings, DEFAULT_MAX_LEN, KNOWN_FINDINGS};
use crate::{run, setup, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The sources the report covers: the code under test.
fn sources() -> Result<Vec<PathBuf>> {
    let out = Command::new("cargo").args(["metadata", "--format-version", "1"]).output()?;
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut dirs = vec![PathBuf::from("mmu/src")];
    for p in meta["packages"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("");
        if name.starts_with("target-") || name == "aarch64-paging" {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or(""));
            dirs.extend(manifest.parent().map(|d| d.join("src")));
        }
    }
    Ok(dirs)
}

/// The `llvm-cov` of the stable toolchain.
fn llvm_cov() -> Result<PathBuf> {
    setup::rust_component("stable", "llvm-tools")?;
    let sysroot = Command::new("rustc").args(["+stable", "--print", "sysroot"]).output()?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let host = fuzz::host_triple()?;
    let p = Path::new(&sysroot).join("lib/rustlib").join(&host).join("bin/llvm-cov");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!("{} is missing (rustup component add llvm-tools-preview)", p.display()).into())
    }
}

/// Runs a `seconds` campaign, then the coverage report.
pub fn coverage(seconds: u64) -> Result {
    setup::cargo_tool("cargo-fuzz", "fuzz")?;
    let llvm_cov = llvm_cov()?;
    let settings =
        Settings { defects: "none".into(), known: Some(KNOWN_FINDINGS.into()), ..Settings::default() };
    let dirs = Dirs {
        work: "target/fuzz/coverage-campaign".into(),
        regressions: "target/coverage/regressions".into(),
        snapshots: "target/coverage/snapshots".into(),
    };
    fuzz::fuzz(&settings, seconds, 1, DEFAULT_MAX_LEN, &dirs)?;
    let known = std::fs::canonicalize(KNOWN_FINDINGS)?;
    // Release without debug assertions, like the campaign (aarch64-paging's debug-only
    // overflow in `MemoryRegion::new(0, 0)` would stop the replay: see its adapter's tests).
    run(Command::new("cargo")
        .current_dir("fuzz")
        .args(["+stable", "fuzz", "coverage", "-O", "-s", "none", "ops"])
        .arg("../target/fuzz/coverage-campaign/corpus")
        .arg("../target/fuzz/seeds")
        .env("STAGEHAND_KNOWN", known))?;
    let host = fuzz::host_triple()?;
    let bin = format!("fuzz/target/{host}/coverage/{host}/release/ops");
    let profdata = "fuzz/coverage/ops/coverage.profdata";
    let sources = sources()?;
    std::fs::create_dir_all("target/coverage")?;
    let cov = |sub: &str, extra: &[&str]| {
        let mut c = Command::new(&llvm_cov);
        c.args([sub, &bin, "-instr-profile", profdata]).args(extra).args(&sources);
        c
    };
    run(&mut cov("show", &["-format=html", "-output-dir=target/coverage/html"]))?;
    let out = cov("report", &[]).output()?;
    if !out.status.success() {
        return Err(format!("llvm-cov report failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    std::fs::write("target/coverage/summary.txt", &out.stdout)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("wrote target/coverage/html/index.html and target/coverage/summary.txt");
    Ok(())
}
