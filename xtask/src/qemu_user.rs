//! `cargo xtask qemu-user`: the `stagehand` program built for AArch64 Linux and run under
//! qemu-user, where a target's own TLB instructions raise SIGILL at EL0 and the harness
//! records what it decodes from them (`harness::native::trap`). There `aarch64-paging`
//! executes its own `Stage2::invalidate_va` (`tlbi ipas2e1is`); natively its regime hook
//! reports each call. The two must agree exactly: every file of its corpus and regressions
//! passes its exact expectation under qemu-user, and the trace hash and the violations of
//! each file and of random sequences (workarounds on and off) are the native ones.
//!
//! Then the AArch64-only `page-table-generic`: its corpus tests under qemu-user, its files
//! and random sequences on QEMU at EL2 against those native runs, and a libFuzzer campaign
//! of it under qemu-aarch64.

use crate::{fuzz, run, setup, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target of the qemu-user build.
const TRIPLE: &str = "aarch64-unknown-linux-gnu";

/// Installs the cross linker, qemu-user and the Rust target.
pub fn setup() -> Result {
    setup::apt(&[
        ("qemu-user", "qemu-aarch64"),
        ("gcc-aarch64-linux-gnu", "aarch64-linux-gnu-gcc"),
        ("libc6-dev-arm64-cross", "/usr/aarch64-linux-gnu/include/stdio.h"),
    ])?;
    setup::rust_target("stable", TRIPLE)
}

/// Builds `stagehand` for AArch64 Linux and returns its path.
pub fn build() -> Result<PathBuf> {
    setup()?;
    run(Command::new("cargo")
        .args(["+stable", "build", "--release", "--quiet", "--target", TRIPLE, "-p", "stagehand-cli"])
        .args(["--bin", "stagehand"])
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc"))?;
    Ok(Path::new("target").join(TRIPLE).join("release/stagehand"))
}

/// `stagehand ARGS` under qemu-aarch64, stopped after 10 minutes (a hang is an error).
fn emulated(bin: &Path) -> Command {
    let mut c = Command::new("timeout");
    c.args(["600", "qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]).arg(bin);
    c
}

/// Runs `cmd` and returns its standard output; a failure is an error with its stderr.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The files of `aarch64-paging`: its corpus and its regression files.
fn files() -> Result<Vec<PathBuf>> {
    let mut files = vec![PathBuf::from("corpus/aarch64-paging")];
    for e in std::fs::read_dir("corpus/regressions")? {
        let p = e?.path();
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("aarch64-paging")) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// The check described in the module documentation, with `naive` random sequences per
/// workaround setting; then the AArch64-only target `page-table-generic`: the whole corpus's
/// snapshot, inertness, known-findings and trace tests run under qemu-user (its files are
/// snapshotted there, and every other file must give its host snapshot), and `naive`
/// random sequences of it with its workarounds on must be clean.
pub fn check(naive: usize) -> Result {
    let native = fuzz::stagehand()?;
    let emu = build()?;
    let files = files()?;
    run(emulated(&emu).arg("run").args(&files))?;
    hang_is_reported(&emu)?;
    let mut compared = 0;
    let mut digests: Vec<Vec<String>> = vec![vec!["digest".into()]];
    digests[0].extend(files.iter().map(|f| f.display().to_string()));
    for w in ["all", "none"] {
        let n = naive.to_string();
        digests.push(
            ["--target", "aarch64-paging", "--workarounds", w, "digest", "--naive", &n]
                .map(String::from)
                .to_vec(),
        );
    }
    for args in &digests {
        let here = output(Command::new(&native).args(args))?;
        let there = output(emulated(&emu).args(args))?;
        if let Some((a, b)) = here.lines().zip(there.lines()).find(|(a, b)| a != b) {
            return Err(format!("native and qemu-user differ:\n  native:    {a}\n  qemu-user: {b}").into());
        }
        if here.lines().count() != there.lines().count() {
            return Err("native and qemu-user digested different numbers of sequences".into());
        }
        compared += here.lines().count();
    }
    let findings =
        output(emulated(&emu).args(&digests[2]))?.lines().filter(|l| !l.ends_with("clean")).count();
    println!(
        "qemu-user: aarch64-paging executing its own TLBIs agrees with the native hook on {compared} sequences \
         ({} files, {naive} random with the workarounds on and {naive} off; {findings} of those off show violations)",
        compared - 2 * naive
    );
    // The corpus tests, built for AArch64 Linux and run under qemu-user.
    run(Command::new("timeout")
        .args(["1800", "cargo", "+stable", "test", "--release", "--target", TRIPLE, "-p", "stagehand-cli"])
        .args(["snapshots", "inert", "known", "trace_dict", "strength"].iter().flat_map(|t| ["--test", t]))
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc")
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER", "qemu-aarch64 -L /usr/aarch64-linux-gnu"))?;
    // What the crates do where the harness cannot ask them (a protect to no access).
    run(Command::new("timeout")
        .args(["600", "cargo", "+stable", "test", "--release", "--target", TRIPLE])
        .args(["-p", "target-page-table-generic", "--test", "crate_findings"])
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc")
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER", "qemu-aarch64 -L /usr/aarch64-linux-gnu"))?;
    let n = naive.to_string();
    let random = output(emulated(&emu).args([
        "--target",
        "page-table-generic",
        "--workarounds",
        "all",
        "digest",
        "--naive",
        &n,
    ]))?;
    let dirty: Vec<&str> = random.lines().filter(|l| !l.ends_with("clean")).collect();
    if !dirty.is_empty() {
        return Err(format!(
            "page-table-generic with its workarounds: {} of {naive} random sequences show violations, e.g. {} \
             (`stagehand --target page-table-generic digest --naive {naive} --emit ID` prints one)",
            dirty.len(),
            dirty[0]
        )
        .into());
    }
    println!("qemu-user: page-table-generic's corpus meets its snapshots; {naive} random sequences with its workarounds are clean");
    on_qemu(&native, naive)?;
    // libFuzzer under qemu-aarch64.
    fuzz::smoke_aarch64_only(15)
}

/// A run that does not return is reported with its op and stopped: `stagehand run --hang`
/// on a protect that `page-table-generic` walks forever without its `check-protect-range`
/// workaround; with every workaround, the same file passes.
fn hang_is_reported(emu: &Path) -> Result {
    let file = "cli/tests/data/page-table-generic-protect-hangs.s2";
    let out = emulated(emu).args(["run", "--hang", "2", file]).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = "op #2 `protect_range 0 0x1_0000_0000 0x1ea6_f051_ed09_0951 ro` did not return within 2 s";
    if out.status.code() != Some(1) || !stderr.contains(want) {
        return Err(format!("`stagehand run --hang 2 {file}`: {}, stderr:\n{stderr}", out.status).into());
    }
    run(emulated(emu).args(["--workarounds", "all", "run", "--hang", "2", file]))?;
    // As a campaign summary names it: the input as libFuzzer's bytes, under the campaign's
    // settings, through this host's `stagehand` (which re-runs itself under qemu-aarch64).
    let stagehand = fuzz::stagehand()?;
    let bytes = std::env::temp_dir().join(format!("stagehand-hang-{}", std::process::id()));
    run(Command::new(&stagehand).arg("convert").arg(file).arg("-o").arg(&bytes))?;
    let campaign = fuzz::Settings {
        defects: "none".into(),
        workarounds: Some(
            "defer-table-frees,remap-with-bbm,split-unmaps,check-output-address,change-memory-type-with-bbm"
                .into(),
        ),
        target: Some("page-table-generic".into()),
        ..fuzz::Settings::default()
    };
    let named = crate::hang::name(&stagehand, &campaign, &bytes);
    let _ = std::fs::remove_file(&bytes);
    if !named.as_deref().is_some_and(|n| n.starts_with("op #2 `protect_range 0 0x1_0000_0000")) {
        return Err(format!("a campaign summary would name the hang of {file} as {named:?}").into());
    }
    println!("qemu-user: a hanging protect is reported as a hang in its op, and returns with its workaround; a campaign summary names it: {}", named.unwrap_or_default());
    Ok(())
}

/// `page-table-generic` on QEMU at EL2 (its own image, where the crate's flush executes
/// `tlbi alle1is`), against the native runs under qemu-user, as a user runs it: this
/// host's `stagehand qemu` re-runs itself under qemu-user for that target. Its corpus and
/// regression files, and `naive` random sequences with the workarounds on and with only
/// `check-protect-range` (without it a random protect of 2^62 bytes never returns), in both
/// guest modes.
fn on_qemu(native: &Path, naive: usize) -> Result {
    setup::apt(&[("qemu-system-arm", "qemu-system-aarch64")])?;
    let mut regressions: Vec<PathBuf> = std::fs::read_dir("corpus/regressions")?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    regressions.retain(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("page-table-generic"))
    });
    regressions.sort();
    let n = naive.to_string();
    for guest in ["mmu-off", "identity"] {
        let stagehand = || {
            let mut c = Command::new("timeout");
            c.arg("900").arg(native).args(["--guest", guest]);
            c
        };
        run(stagehand().args(["qemu", "corpus/page-table-generic"]))?;
        run(stagehand().arg("qemu").args(&regressions))?;
        for w in ["all", "check-protect-range"] {
            let out = std::env::temp_dir().join("stagehand-qemu-random-page-table-generic");
            run(stagehand()
                .args(["--target", "page-table-generic", "--workarounds", w, "qemu-random", "--count", &n])
                .arg("--out")
                .arg(&out))?;
        }
    }
    println!(
        "QEMU at EL2: page-table-generic's corpus, its {} regression files and {naive} random sequences (workarounds \
         all, and check-protect-range only) agree with the native runs in both guest modes",
        regressions.len()
    );
    Ok(())
}
